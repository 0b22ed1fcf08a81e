"""Rollup: closed telemetry buckets become 1-minute and 1-hour averages.

Each pass runs in one write transaction, so a crash rolls it back whole and the next
pass picks up from the same mark (``store/telemetry.py`` holds the invariant).
"""

from __future__ import annotations

from scheduler.loops.base import Loop
from scheduler.runtime import Runtime
from scheduler.settings import ServerSettings
from scheduler.store.models import utcnow
from scheduler.store.telemetry import Retention, roll_up


def retention_of(settings: ServerSettings) -> Retention:
    return Retention(
        samples_s=settings.keep_samples_s,
        minute_s=settings.keep_minute_rollups_s,
        hour_s=settings.keep_hour_rollups_s,
    )


def rollup_loop(rt: Runtime) -> Loop:
    def run_once() -> int:
        with rt.db.write() as session:
            return roll_up(session, utcnow())

    return Loop(name="rollup", interval_s=rt.settings.rollup_interval_s, run_once=run_once)
