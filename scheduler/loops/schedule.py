"""The scheduling loop: a cycle on every event (submit, finish, node change), and a
periodic pass as a safety net.

Under a stream of events (every finished attempt is one) a cycle runs at most every
``CYCLE_MIN_GAP_S``: each cycle reads the whole backlog, so one per event would spend
the server's time re-reading it, while a short gap costs a freed GPU that long at most.
An idle cluster's submit still starts a cycle at once."""

from __future__ import annotations

import asyncio

from scheduler.cycle import run_cycle
from scheduler.loops.base import Loop
from scheduler.runtime import Runtime

CYCLE_MIN_GAP_S = 0.05


def schedule_loop(rt: Runtime) -> Loop:
    def wake() -> asyncio.Event:
        return rt.notifier.cycle

    return Loop(
        name="schedule",
        interval_s=rt.settings.cycle_interval_s,
        run_once=lambda: run_cycle(rt),
        wake=wake,
        min_gap_s=CYCLE_MIN_GAP_S,
    )
