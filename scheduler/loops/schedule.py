"""The scheduling loop: a cycle on every event (submit, finish, node change), and a
periodic pass as a safety net."""

from __future__ import annotations

import asyncio

from scheduler.cycle import run_cycle
from scheduler.loops.base import Loop
from scheduler.runtime import Runtime


def schedule_loop(rt: Runtime) -> Loop:
    def wake() -> asyncio.Event:
        return rt.notifier.cycle

    return Loop(
        name="schedule",
        interval_s=rt.settings.cycle_interval_s,
        run_once=lambda: run_cycle(rt),
        wake=wake,
    )
