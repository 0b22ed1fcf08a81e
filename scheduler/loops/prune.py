"""Pruning: each telemetry level is deleted once older than its window (server settings).

Raw samples go after ``--keep-samples``, 1-minute averages after
``--keep-minute-rollups``, 1-hour averages after ``--keep-hour-rollups``; nothing the
rollup has not absorbed yet goes (``store/telemetry.py:prune``).
"""

from __future__ import annotations

from scheduler.loops.base import Loop
from scheduler.loops.rollup import retention_of
from scheduler.runtime import Runtime
from scheduler.store.models import utcnow
from scheduler.store.telemetry import prune


def prune_loop(rt: Runtime) -> Loop:
    retention = retention_of(rt.settings)

    def run_once() -> int:
        with rt.db.write() as session:
            return prune(session, utcnow(), retention)

    return Loop(name="prune", interval_s=600.0, run_once=run_once)
