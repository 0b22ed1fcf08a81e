"""Quick syncs answered from memory while nothing of their node changed.

Most syncs change nothing: the same attempts running, new samples. ``quick_sync``
answers one from a read of the node and its live parts; this keeps that read, per
node and per server process, so that the node's next syncs are answered without
going to the database at all while it stays true. It stays true until the node's
desired state changes, and every such change (a placement, a stop, a drain, an
applied report) wakes the node's event in every server process: in this one through
the ``Notifier``, in the others through the database (``WakeChannel``). A memo is
kept with the event taken before its read, so a change committed during the read
already ends it; a memo also ends after ``long_poll_s``, the same bound a held long
poll puts on a lost wake-up. A sync is answered from a memo only if it reports what
the memo's sync reported (``QuickSync.answers``); anything else reads afresh.

All of it runs on the server's event loop: no lock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from scheduler.domain.sync import SyncRequest
from scheduler.store.agent_sync import QuickSync

MAX_MEMOS = 100_000


@dataclass(frozen=True)
class _Memo:
    read: SyncRequest  # the sync the read was for
    quick: QuickSync  # what it found, with the reply
    changed: asyncio.Event  # the node's event, taken before the read
    read_at: float  # monotonic


class SyncMemos:
    """Each node's last quick read in this process, while it holds."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._memos: dict[str, _Memo] = {}

    def answer(self, req: SyncRequest) -> QuickSync | None:
        """The kept read that answers ``req`` (with its reply), or None."""
        memo = self._valid(req.node.name)
        return memo.quick if memo is not None and memo.quick.answers(req, memo.read) else None

    def ahead(self, req: SyncRequest) -> QuickSync | None:
        """The kept read for ``req``'s reports to be written with, the reply as read in
        its ``before`` (``QuickSync.ahead``), or None. The node's memo ends: its reports
        change what it read."""
        memo = self._valid(req.node.name)
        if memo is None:
            return None
        found = memo.quick.ahead(req, memo.read)
        if found is not None:
            self.forget(req.node.name)
        return found

    def _valid(self, node: str) -> _Memo | None:
        memo = self._memos.get(node)
        if memo is None:
            return None
        if memo.changed.is_set() or time.monotonic() - memo.read_at > self.keep_s:
            del self._memos[node]
            return None
        return memo

    def keep(
        self, req: SyncRequest, quick: QuickSync, changed: asyncio.Event, read_at: float
    ) -> None:
        """Keep a quick read with a reply, made after ``changed`` was taken at ``read_at``."""
        if changed.is_set() or quick.reply is None:
            self.forget(req.node.name)
            return
        if len(self._memos) >= MAX_MEMOS:
            self._memos.clear()
        self._memos[req.node.name] = _Memo(req, quick, changed, read_at)

    def forget(self, node: str) -> None:
        self._memos.pop(node, None)
