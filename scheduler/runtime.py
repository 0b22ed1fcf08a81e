"""What a running server holds: the database, its settings and the wake-up signals.

``Notifier`` is how a committed change reaches those waiting for it: the agents whose
long poll should answer now, and the scheduling loop. It may be called from any
thread; waiters live on the server's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from scheduler.policy import Policy, make_policy
from scheduler.settings import ServerSettings
from scheduler.store.attempts import Effects
from scheduler.store.db import Database


class Notifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nodes: dict[str, asyncio.Event] = {}
        self.cycle = asyncio.Event()
        self.closing = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.cycle = asyncio.Event()

    def node_event(self, name: str) -> asyncio.Event:
        """The event the next change of ``name``'s desired state will set (take it first)."""
        event = self._nodes.get(name)
        if event is None or event.is_set():
            event = self._nodes[name] = asyncio.Event()
        if self.closing:  # the server is stopping: no long poll may hold it up
            event.set()
        return event

    def _fire(self, names: list[str], schedule: bool) -> None:
        for name in names:
            event = self._nodes.pop(name, None)
            if event is not None:
                event.set()
        if schedule:
            self.cycle.set()

    def close(self) -> None:
        """Answer every held long poll now (the server is shutting down)."""
        self.closing = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire, list(self._nodes), True)

    def notify(self, effects: Effects) -> None:
        self.wake(effects.nodes, schedule=effects.schedule)

    def wake(self, nodes: Iterable[str] = (), *, schedule: bool = False) -> None:
        names = list(nodes)
        if self._loop is None or (not names and not schedule):
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._fire(names, schedule)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire, names, schedule)


@dataclass
class Runtime:
    db: Database
    settings: ServerSettings
    notifier: Notifier = field(default_factory=Notifier)
    policy: Policy = field(init=False)

    def __post_init__(self) -> None:
        self.policy = build_policy(self.settings)


def build_policy(settings: ServerSettings) -> Policy:
    """The policy the settings name; ValueError (one line) names an unknown piece."""
    s = settings
    return make_policy(
        ordering=s.ordering,
        placement=s.placement,
        preemption=s.preemption,
        backfill=s.backfill,
        admission=s.admission,
        params=s.params,
    )
