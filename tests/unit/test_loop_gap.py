"""A loop woken by an event runs at once when idle, and at most once per ``min_gap_s``
under a stream of events (the events of a busy moment are taken in one pass)."""

from __future__ import annotations

import asyncio

from scheduler.loops.base import Loop, run_loop

LONG_S = 3600.0


async def _passes_after_events(min_gap_s: float, events: int, settle_s: float) -> list[int]:
    """Run a loop and wake it ``events`` times: the passes after the first pass, and
    after the wakes (once a second pass came, or ``settle_s`` passed)."""
    wake = asyncio.Event()
    stopping = asyncio.Event()
    passes: list[int] = []
    loop = Loop(
        name="test",
        interval_s=LONG_S,
        run_once=lambda: passes.append(len(passes)),
        wake=lambda: wake,
        min_gap_s=min_gap_s,
    )
    task = asyncio.create_task(run_loop(loop, stopping))
    while not passes:
        await asyncio.sleep(0.01)
    counts = [len(passes)]
    for _ in range(events):
        wake.set()
        await asyncio.sleep(0.01)
    deadline = asyncio.get_running_loop().time() + settle_s
    while len(passes) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    counts.append(len(passes))
    stopping.set()
    await task
    return counts


def test_an_idle_loop_answers_an_event_with_a_pass() -> None:
    first, after = asyncio.run(_passes_after_events(min_gap_s=0.0, events=1, settle_s=20.0))
    assert (first, after) == (1, 2)


def test_events_within_the_gap_wait_for_it() -> None:
    first, after = asyncio.run(_passes_after_events(min_gap_s=LONG_S, events=5, settle_s=0.3))
    assert (first, after) == (1, 1)
