"""A daemon is an ordered list of small loops; a failing loop is logged and goes on.

Each loop has ``name``, ``interval_s`` and a blocking ``run_once()`` (it runs in a
worker thread: database work must not block the event loop). ``wake`` optionally
names an asyncio.Event that starts the next pass before the interval is over, but no
sooner than ``min_gap_s`` after the previous pass began: the events of a busy moment
are taken in one pass, not one pass each (an idle loop still answers an event at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("corral.loops")


@dataclass
class Loop:
    name: str
    interval_s: float
    run_once: Callable[[], object]
    wake: Callable[[], asyncio.Event] | None = None  # the event to wait on, looked up each pass
    min_gap_s: float = 0.0  # from the start of one pass to the start of the next, at least


async def run_loop(loop: Loop, stopping: asyncio.Event) -> None:
    failures = 0
    while not stopping.is_set():
        event = loop.wake() if loop.wake else None
        if event is not None:
            event.clear()
        began = time.monotonic()
        try:
            await asyncio.to_thread(loop.run_once)
            if failures:
                log.info("loop %s recovered", loop.name)
            failures = 0
        except Exception:
            failures += 1
            if failures == 1 or failures % 30 == 0:
                log.exception("loop %s failed (%d in a row); it goes on", loop.name, failures)
        await _sleep(loop.interval_s, event, stopping)
        gap_left_s = began + loop.min_gap_s - time.monotonic()
        if gap_left_s > 0:  # woken early: let the other events of the moment come too
            await _sleep(gap_left_s, None, stopping)


async def _sleep(interval_s: float, event: asyncio.Event | None, stopping: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(stopping.wait())]
    if event is not None:
        waiters.append(asyncio.ensure_future(event.wait()))
    try:
        await asyncio.wait(waiters, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def run_loops(loops: list[Loop], stopping: asyncio.Event) -> None:
    await asyncio.gather(*(run_loop(loop, stopping) for loop in loops))
