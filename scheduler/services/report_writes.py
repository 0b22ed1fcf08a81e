"""The writes of the attempt reports agents sync, one node at a time, newest report first.

On PostgreSQL a sync with starts or ends to apply writes them on a thread of its own
(``services/agents.py``: ``_write_reports``); its reply waits for that write at most
``report_wait_s`` (``corral server``: 0). A write that takes longer goes on behind the
reply, and the agent syncs again meanwhile, reporting the same and perhaps more.
Writing each such sync would let a slow database queue ever more writes of the same
facts. So a node has at most one write running and one waiting: a newer sync of the
node replaces the waiting one's request, and the syncs waiting for it share its
outcome. That loses nothing,
since an agent reports every attempt it holds, each with its latest state, until the
desired state stops listing it: the newest request says all the older ones did.

A write whose reply no sync waits for any more (``Write.wanted``) skips the read of
the desired state after it. One that fails is logged; the agent reports the same again.
All of it is thread-safe: the event loop puts, the pool's threads write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from scheduler.domain.sync import SyncReply, SyncRequest
from scheduler.store.agent_sync import QuickSync

log = logging.getLogger("corral.agents")
# writes of different nodes at once, beside the syncs' reads; shared by every runtime
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="corral-reports")


@dataclass
class Write:
    """A node's reports waiting for, or in, their write. ``done`` gets the reply after
    the commit (None if not read, or if the node was lost meanwhile: see ``Apply``)."""

    req: SyncRequest
    quick: QuickSync
    received: float  # perf_counter() when its first sync arrived
    apply: Apply
    done: Future[SyncReply | None] = field(default_factory=Future)
    wanted: bool = True  # a sync still waits for the reply


# writes one node's reports: (the write, whether a sync still waits for its reply) ->
# the reply, or None
Apply = Callable[[Write, Callable[[], bool]], SyncReply | None]


class ReportWrites:
    """Each node's running and waiting write, in one server process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, Write] = {}  # node id -> its write in a thread
        self._waiting: dict[int, Write] = {}  # node id -> the one after it

    def put(self, req: SyncRequest, quick: QuickSync, received: float, apply: Apply) -> Write:
        """The write that will apply ``req``'s reports with ``apply``: a new one, or the
        node's waiting one, which now writes ``req`` instead of the older request."""
        node = quick.node_id
        with self._lock:
            queued = self._waiting.get(node)
            if queued is not None:
                queued.req, queued.quick, queued.wanted = req, quick, True
                return queued
            write = Write(req, quick, received, apply)
            if node in self._running:
                self._waiting[node] = write
                return write
            self._running[node] = write
        _POOL.submit(self._run, write)
        return write

    def unwanted(self, write: Write) -> None:
        """No sync waits for ``write``'s reply any more."""
        with self._lock:
            write.wanted = False

    def _wanted(self, write: Write) -> Callable[[], bool]:
        def wanted() -> bool:
            with self._lock:
                return write.wanted

        return wanted

    def _run(self, write: Write) -> None:
        node = write.quick.node_id
        try:
            write.done.set_result(write.apply(write, self._wanted(write)))
        except Exception as exc:
            log.warning("could not write the reports of node %s; it reports them again: %s",
                        write.req.node.name, exc)  # fmt: skip
            write.done.set_exception(exc)
        finally:
            with self._lock:
                del self._running[node]
                after = self._waiting.pop(node, None)
                if after is not None:
                    self._running[node] = after
            if after is not None:
                _POOL.submit(self._run, after)

    def pending(self) -> list[Future[SyncReply | None]]:
        with self._lock:
            return [w.done for w in (*self._running.values(), *self._waiting.values())]

    def wait_written(self, timeout_s: float | None = None) -> bool:
        """Wait until every write running or waiting now has ended, and those they
        hand on to; whether they did within ``timeout_s``."""
        pending = self.pending()
        while pending:
            _, not_done = wait(pending, timeout=timeout_s)
            if not_done:
                return False
            pending = self.pending()
        return True
