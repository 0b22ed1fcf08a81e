"""What a running server holds: the database, its settings and the wake-up signals.

``Notifier`` is how a committed change reaches those waiting for it: the agents whose
long poll should answer now, and the scheduling loop. It may be called from any
thread; waiters live on the server's event loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from scheduler.policy import Policy, make_policy
from scheduler.settings import ServerSettings
from scheduler.stats import Histogram, Slots
from scheduler.store.attempts import Effects
from scheduler.store.db import Database
from scheduler.store.leadership import LeaderLock


class Notifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nodes: dict[str, asyncio.Event] = {}
        self.cycle = asyncio.Event()
        self.closing = False
        # where wake-ups also go for the other servers on one PostgreSQL (WakeChannel)
        self.publish: Callable[[list[str], bool], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.cycle = asyncio.Event()

    def serves_here(self) -> bool:
        """Whether wake-ups reach the running event loop's waiters: it is the loop the
        server bound (a caller on another loop, as in-process tests, is never woken)."""
        try:
            return self._loop is asyncio.get_running_loop()
        except RuntimeError:
            return False

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
        if self.publish is not None and (names or schedule):
            self.publish(names, schedule)
        self.wake_local(names, schedule)

    def wake_local(self, names: list[str] | None, schedule: bool) -> None:
        """Wake this server's waiters only (``names`` None: every held long poll)."""
        if self._loop is None or self._loop.is_closed():
            return
        if names is None:
            self._loop.call_soon_threadsafe(lambda: self._fire(list(self._nodes), schedule))
            return
        if not names and not schedule:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._fire(names, schedule)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fire, names, schedule)


CYCLE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SYNC_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """Instruments this server observes itself (the rest is read from the database at
    scrape time, ``api/metrics.py``). Registered nowhere global: each server (and each
    test's app) has its own, exported by its /metrics collector. A server of several
    workers shares them (``shared``, made by ``share`` before the fork; ``slot``: this
    worker's), so that any worker's scrape reports the whole server."""

    CYCLE = "corral_cycle_duration_seconds"
    SYNC = "corral_agent_sync_duration_seconds"
    REPORTS = "corral_agent_report_write_seconds"
    BUCKETS = {CYCLE: CYCLE_BUCKETS_S, SYNC: SYNC_BUCKETS_S, REPORTS: SYNC_BUCKETS_S}

    def __init__(self, shared: dict[str, Slots] | None = None, slot: int = 0) -> None:
        kept = shared or {}
        self.cycle_duration = Histogram(
            self.CYCLE,
            "Duration of one scheduling cycle (snapshot, decide, apply).",
            CYCLE_BUCKETS_S,
            kept.get(self.CYCLE),
            slot,
        )
        self.sync_duration = Histogram(
            self.SYNC,
            "Seconds this server took to answer an agent sync, from its parsed request to "
            "its reply, a long poll's hold left out.",
            SYNC_BUCKETS_S,
            kept.get(self.SYNC),
            slot,
        )
        self.report_write = Histogram(
            self.REPORTS,
            "Seconds from an agent sync's parsed request to the commit of the attempt "
            "reports it carried (PostgreSQL, a node up with the facts it reports), "
            "whether its reply waited for that commit or not.",
            SYNC_BUCKETS_S,
            kept.get(self.REPORTS),
            slot,
        )

    @classmethod
    def share(cls, workers: int) -> dict[str, Slots]:
        """Shared memory for the instruments of ``workers`` processes."""
        return {name: Slots(workers, Histogram.width(b)) for name, b in cls.BUCKETS.items()}


@dataclass
class Runtime:
    db: Database
    settings: ServerSettings
    notifier: Notifier = field(default_factory=Notifier)
    policy: Policy = field(init=False)
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    # several servers on one PostgreSQL: the lock that elects the one running the loops
    # (None: this server alone runs them, as with SQLite)
    election: LeaderLock | None = None
    role: str = "leader"  # or "follower": serves the API only
    leader_epoch: int = 0  # the epoch this server leads in; 0 while it does not lead
    # an API worker of ``corral server --workers``: the role of the process running the
    # loops (None: this process runs them, or follows, itself)
    loops_role: Callable[[], str] | None = None

    def __post_init__(self) -> None:
        self.policy = build_policy(self.settings)

    def reported_role(self) -> str:
        """This server's role as /healthz tells it: "leader" while it runs the loops."""
        return self.loops_role() if self.loops_role is not None else self.role


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


T = TypeVar("T")


def kept_for(registry: dict[int, T], rt: Runtime, make: Callable[[], T]) -> T:
    """What ``registry`` keeps for the server ``rt`` (made on first use), dropped with it.

    For state a module keeps per running server (buffered readings, verified agent
    tokens): the tests run several servers in one process."""
    kept = registry.get(id(rt))
    if kept is None:
        kept = registry[id(rt)] = make()
        weakref.finalize(rt, registry.pop, id(rt), None)
    return kept
