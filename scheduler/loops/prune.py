"""Pruning: telemetry samples older than the retention window are deleted."""

from __future__ import annotations

from datetime import timedelta

from scheduler.loops.base import Loop
from scheduler.runtime import Runtime
from scheduler.store.models import utcnow
from scheduler.store.nodes import prune_samples

SAMPLE_RETENTION = timedelta(days=7)


def prune_loop(rt: Runtime) -> Loop:
    def run_once() -> int:
        with rt.db.write() as session:
            return prune_samples(session, utcnow() - SAMPLE_RETENTION)

    return Loop(name="prune", interval_s=600.0, run_once=run_once)
