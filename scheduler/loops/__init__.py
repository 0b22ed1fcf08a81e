"""Periodic duties of the server, each a small loop: schedule, liveness, limits, usage,
prune."""
