"""Pure vocabulary of corral: specs, statuses, snapshots, decisions and the agent protocol.

Nothing here does I/O or reads a clock; every other room imports from here.
"""
