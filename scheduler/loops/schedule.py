"""The scheduling loop: a cycle on every event (submit, finish, node change), and a
periodic pass as a safety net.

Under a stream of events (every finished attempt is one) a cycle runs at most every
``CYCLE_MIN_GAP_S``: each cycle reads the whole backlog, so one per event would spend
the server's time re-reading it, while a short gap costs a freed GPU that long at most.
A woken cycle after one that took ``CYCLE_REST_AFTER_S`` or more also waits as long as
that one took (``CYCLE_REST_RATIO``): on a large cluster, where a cycle takes a large
part of a second, back-to-back cycles would hold the interpreter from the agents' syncs
and the API; they get at least half of it. Shorter cycles (a drain on a small cluster)
keep the 50 ms cadence, where a rest would only delay placements.
An idle cluster's submit still starts a cycle at once."""

from __future__ import annotations

import asyncio

from scheduler.cycle import run_cycle
from scheduler.loops.base import Loop
from scheduler.runtime import Runtime

CYCLE_MIN_GAP_S = 0.05
CYCLE_REST_RATIO = 1.0
CYCLE_REST_AFTER_S = 0.25


def schedule_loop(rt: Runtime) -> Loop:
    def wake() -> asyncio.Event:
        return rt.notifier.cycle

    return Loop(
        name="schedule",
        interval_s=rt.settings.cycle_interval_s,
        run_once=lambda: run_cycle(rt),
        wake=wake,
        min_gap_s=CYCLE_MIN_GAP_S,
        rest_ratio=CYCLE_REST_RATIO,
        rest_after_s=CYCLE_REST_AFTER_S,
    )
