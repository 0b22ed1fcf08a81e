"""The agent sync, server side: apply what the agent reports, answer its desired state.

A long poll: when the agent has nothing to do the reply waits until the node's
desired state changes (the Notifier) or ``wait_s`` passes. The node's event is taken
before the desired state is read, so a change committed in between is not missed.

Group commit: syncs that arrive while a write is running wait for it and then go in
together, one write transaction (one commit, one fsync) for all of them. Each sync is
applied in its own savepoint, so one that fails (bad data, a lost race) is rolled
back alone and its agent gets the error; the others commit. A reply is sent only
after the transaction holding its data committed. This is for SQLite, whose writers
take turns anyway and pay an fsync per commit; on PostgreSQL each sync keeps its own
transaction, as writers run side by side there and one holding many nodes' row locks
would deadlock with the cycle's placements.

Quick syncs: most syncs change nothing (the same attempts running, new samples). Such
a sync is answered from one read transaction (``quick_sync``), and what it leaves to
write (the node's last-seen time, its readings) waits in ``Readings`` and is written
for all nodes at once every ``FLUSH_INTERVAL_S``. That is telemetry: a server killed
before a flush loses at most that much of it, never a job's state, and the node
timeout is far longer. A sync with reports to apply, of a node that is up with the
facts it reports, writes only the reports (``apply_reports``): on PostgreSQL in its
own transaction, the node row locked without waiting for placements that refer to
it; on SQLite in the group commit. Its readings wait likewise. Every other sync (a
new or lost node, new facts) takes the write path above, node facts and readings
included, and is answered after its commit.

Replies before writes: on PostgreSQL a sync's reply waits for its reports' write at
most ``report_wait_s`` (``corral server``: 0); a slower write goes on behind a reply
with the desired state as read before it (``_write_reports``,
``services/report_writes.py``). When the node's memo can tell what that read would
say (``SyncMemos.ahead``), no read precedes the write. The reply is no receipt: the
agent reports every attempt it holds until the desired state stops listing it, which
only a committed end does, so a report lost with the server is brought again. Log
bytes are acknowledged by the reply itself, so a sync carrying them always waits
(``may_answer_before_write``).

Memos: the read of a quick sync is kept, per node, until the node's desired state
changes (its Notifier event, which the other servers fire through the database) or
``long_poll_s`` passes; the node's next syncs that report the same are answered from
it on the event loop, without a thread or a statement (``services/sync_memo.py``).
Nothing else of a node is kept between syncs, so any server of several may answer
the next one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from scheduler.domain.sync import SyncReply, SyncRequest
from scheduler.runtime import Runtime, kept_for
from scheduler.services.report_writes import ReportWrites, Write
from scheduler.services.sync_memo import SyncMemos
from scheduler.store.agent_sync import (
    QuickSync,
    apply_reports,
    apply_sync,
    desired_state,
    needs_action,
    quick_sync,
)
from scheduler.store.attempts import Effects
from scheduler.store.models import utcnow
from scheduler.store.nodes import SAMPLE_MIN_INTERVAL_S, get_node
from scheduler.store.telemetry import NodeReading, write_readings

log = logging.getLogger("corral.agents")
MAX_GROUP = 64  # syncs per transaction: bounds how long one write holds the lock
FLUSH_INTERVAL_S = 1.0  # quick syncs' readings are written this often
# the syncs' own threads: a sync waiting for a lock never holds up the other duties' threads
_SYNC_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="corral-sync")


@dataclass
class _Waiting:
    req: SyncRequest
    reply: asyncio.Future[SyncReply]
    quick: QuickSync | None = None  # the read found the node up with the facts it reports


@dataclass
class SyncGroups:
    """The syncs waiting for the next group commit, on one event loop."""

    loop: asyncio.AbstractEventLoop
    waiting: list[_Waiting] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None


_groups: dict[int, SyncGroups] = {}  # id(runtime) -> its groups


def _groups_of(rt: Runtime) -> SyncGroups:
    loop = asyncio.get_running_loop()
    groups = _groups.get(id(rt))
    if groups is None or groups.loop is not loop:
        groups = _groups[id(rt)] = SyncGroups(loop)
        weakref.finalize(rt, _groups.pop, id(rt), None)
    return groups


def apply_group(
    rt: Runtime, reqs: list[SyncRequest], quicks: list[QuickSync | None] | None = None
) -> list[SyncReply | Exception]:
    """Apply ``reqs`` in one write transaction, each in a savepoint; one result each.

    A sync whose read (``quicks``) found its node up with the facts it reports writes
    its attempt reports only (``apply_reports``), its readings waiting in ``Readings``
    as a quick sync's do; any other takes ``apply_sync``. A sync that raises is rolled
    back to its savepoint and its result is the error; the others commit together.
    Wakes the agents and the cycle after the commit."""
    s = rt.settings
    results: list[SyncReply | Exception] = []
    effects = Effects()
    read = [] if quicks is None else quicks
    known: list[tuple[QuickSync, SyncRequest]] = []  # their readings, after the commit
    with rt.db.write() as session:
        for n, req in enumerate(reqs):
            quick = read[n] if n < len(read) else None
            try:
                with session.begin_nested():
                    applied = None
                    if quick is not None:
                        applied = apply_reports(
                            session, req, quick.node_id, utcnow(), s.retry, s.checkpoints,
                            s.agent_sync_interval_s, s.node_timeout_s,
                        )  # fmt: skip
                    if applied is None:  # new or lost node, new facts: the full path
                        quick = None
                        node, changed = apply_sync(session, req, utcnow(), s.retry)
                        applied = desired_state(
                            session, node, req, s.checkpoints, s.agent_sync_interval_s,
                            s.node_timeout_s,
                        ), changed  # fmt: skip
            except Exception as exc:  # that agent's answer; the others go on
                results.append(exc)
                continue
            reply, changed = applied
            assert reply is not None  # apply_reports reads it unless told not to
            effects.merge(changed)
            results.append(reply)
            if quick is not None:
                known.append((quick, req))
    readings, now = _readings_of(rt), utcnow()
    for quick, req in known:
        readings.add(quick, req, now)
    rt.notifier.notify(effects)
    return results


async def _write_groups(rt: Runtime, groups: SyncGroups) -> None:
    """Commit the waiting syncs a group at a time until none waits."""
    try:
        while groups.waiting:
            group, groups.waiting = groups.waiting[:MAX_GROUP], groups.waiting[MAX_GROUP:]
            try:
                reqs, quicks = [w.req for w in group], [w.quick for w in group]
                results = await asyncio.to_thread(apply_group, rt, reqs, quicks)
            except Exception as exc:  # the commit failed: no sync of the group holds
                results = [exc] * len(group)
            for waiting, result in zip(group, results, strict=True):
                if waiting.reply.done():
                    continue  # its request was dropped meanwhile
                if isinstance(result, Exception):
                    waiting.reply.set_exception(result)
                else:
                    waiting.reply.set_result(result)
    finally:
        groups.writer = None


class Readings:
    """The quick syncs' readings not yet written, in one server process (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latest: dict[int, NodeReading] = {}  # node id -> its newest reading
        self.kept: list[NodeReading] = []  # readings to store as sample rows
        self.kept_at: dict[int, datetime] = {}  # node id -> its newest kept reading
        self.flusher: asyncio.Task[None] | None = None

    def add(self, quick: QuickSync, req: SyncRequest, now: datetime) -> None:
        gpus = tuple(
            (quick.gpu_ids[s.index], s) for s in req.gpu_samples if s.index in quick.gpu_ids
        )
        with self.lock:
            marks = [m for m in (quick.last_sample_at, self.kept_at.get(quick.node_id)) if m]
            due = not marks or now - max(marks) >= timedelta(seconds=SAMPLE_MIN_INTERVAL_S)
            keep = due and (req.host is not None or bool(gpus))
            reading = NodeReading(quick.node_id, now, req.host, gpus, keep)
            self.latest[quick.node_id] = reading
            if keep:
                self.kept.append(reading)
                self.kept_at[quick.node_id] = now

    def take(self) -> tuple[list[NodeReading], list[NodeReading]]:
        with self.lock:
            latest, kept = list(self.latest.values()), self.kept
            self.latest, self.kept = {}, []
        return latest, kept

    def written(self, kept: list[NodeReading]) -> None:
        """Forget the marks the database now holds."""
        with self.lock:
            for reading in kept:
                if self.kept_at.get(reading.node_id) == reading.seen_at:
                    del self.kept_at[reading.node_id]

    def put_back(self, latest: list[NodeReading]) -> None:
        """A write failed: keep its last-seen times for the next one (newer ones win).
        Its sample rows are dropped, so that a row the database refuses (a GPU deleted
        meanwhile) cannot hold up every later write; the next syncs bring new ones."""
        with self.lock:
            for reading in latest:
                self.latest.setdefault(reading.node_id, reading)

    def empty(self) -> bool:
        with self.lock:
            return not self.latest and not self.kept


def wait_written(rt: Runtime, timeout_s: float | None = None) -> bool:
    """Wait until every report write of this process has ended (blocking); whether they
    did within ``timeout_s``."""
    return _writes_of(rt).wait_written(timeout_s)


_readings: dict[int, Readings] = {}  # id(runtime) -> its readings
_writes: dict[int, ReportWrites] = {}  # id(runtime) -> its syncs' report writes
_memos: dict[int, SyncMemos] = {}  # id(runtime) -> its nodes' last quick reads


def _readings_of(rt: Runtime) -> Readings:
    return kept_for(_readings, rt, Readings)


def _writes_of(rt: Runtime) -> ReportWrites:
    return kept_for(_writes, rt, ReportWrites)


def _memos_of(rt: Runtime) -> SyncMemos:
    return kept_for(_memos, rt, lambda: SyncMemos(rt.settings.long_poll_s))


def flush_readings(rt: Runtime) -> None:
    """Write the readings waiting in this process, in one transaction (blocking)."""
    readings = _readings_of(rt)
    latest, kept = readings.take()
    if not latest and not kept:
        return
    try:
        with rt.db.write() as session:
            write_readings(session, latest, kept)
    except Exception:
        readings.put_back(latest)
        raise
    readings.written(kept)


async def _flush_every(rt: Runtime, readings: Readings) -> None:
    """Flush every ``FLUSH_INTERVAL_S`` while readings arrive; ends when none is left."""
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        if readings.empty():
            return
        try:
            await asyncio.to_thread(flush_readings, rt)
        except Exception:  # kept for the next pass; the database may be restarting
            log.warning("could not write the agents' readings; will retry", exc_info=True)


def _start_flusher(rt: Runtime) -> None:
    readings = _readings_of(rt)
    loop = asyncio.get_running_loop()
    task = readings.flusher
    if task is None or task.done() or task.get_loop() is not loop:
        readings.flusher = loop.create_task(_flush_every(rt, readings))


def _known(rt: Runtime, req: SyncRequest) -> QuickSync | None:
    """What a read tells of a sync of a node that is up with the facts it reports: the
    QuickSync, with its reply when the sync changes nothing; without one when it has
    reports to apply (``apply_reports``, on PostgreSQL ``_write_reports``; on SQLite in
    the group commit). None: the node is new, lost or reports new facts."""
    s = rt.settings
    before = not rt.db.is_sqlite and s.report_wait_s is not None  # else no reply is as read
    with rt.db.read() as session:
        return quick_sync(
            session, req, s.checkpoints, s.agent_sync_interval_s, s.node_timeout_s, before
        )


def _apply_reports(rt: Runtime, write: Write, wanted: Callable[[], bool]) -> SyncReply | None:
    """Write a node's reports in their own transaction (blocking): the reply after the
    commit, None if ``wanted()`` said no sync waits for it, or if the node was lost
    meanwhile (the full path's to do: its agent's next sync takes it)."""
    s, req, quick = rt.settings, write.req, write.quick
    with rt.db.write() as session:
        applied = apply_reports(
            session, req, quick.node_id, utcnow(), s.retry, s.checkpoints,
            s.agent_sync_interval_s, s.node_timeout_s, wanted,
        )  # fmt: skip
    if applied is None:
        return None
    reply, effects = applied
    rt.metrics.report_write.observe(time.perf_counter() - write.received)
    rt.notifier.notify(effects)
    _readings_of(rt).add(quick, req, utcnow())
    return reply


async def _write_reports(
    rt: Runtime, req: SyncRequest, quick: QuickSync, received: float
) -> SyncReply | None:
    """Write a sync's reports (PostgreSQL, ``ReportWrites``); its reply once they are
    committed, or the reply as read (``quick.before``) if the write takes longer than
    ``report_wait_s``, which then goes on behind it. None: the node was lost meanwhile."""
    writes = _writes_of(rt)
    write = writes.put(req, quick, received, partial(_apply_reports, rt))
    _start_flusher(rt)
    written = asyncio.wrap_future(write.done)
    wait_s = rt.settings.report_wait_s
    if quick.before is not None and wait_s is not None:
        done, _ = await asyncio.wait({written}, timeout=wait_s)
        if not done:
            writes.unwanted(write)
            written.add_done_callback(_leave)  # its failure is logged by ReportWrites
            return quick.before
    return await asyncio.shield(written)


def _leave(write: asyncio.Future[SyncReply | None]) -> None:
    if not write.cancelled():
        write.exception()  # retrieved: asyncio would log it as never retrieved


def _answered(rt: Runtime, req: SyncRequest, quick: QuickSync) -> SyncReply:
    """The reply of a sync that changes nothing; its readings wait for the flush."""
    assert quick.reply is not None
    _readings_of(rt).add(quick, req, utcnow())
    _start_flusher(rt)
    return quick.reply


async def _apply_and_read(
    rt: Runtime, req: SyncRequest, changed: asyncio.Event, received: float
) -> SyncReply:
    memos = _memos_of(rt) if rt.notifier.serves_here() else None  # else none would end
    if memos is not None:
        remembered = await _from_memo(rt, req, memos, received)
        if remembered is not None:
            return remembered
    read_at = time.monotonic()
    loop = asyncio.get_running_loop()
    known = await loop.run_in_executor(_SYNC_POOL, _known, rt, req)
    if known is not None and known.reply is not None:
        if memos is not None:
            memos.keep(req, known, changed, read_at)
        return _answered(rt, req, known)
    if memos is not None:
        memos.forget(req.node.name)
    if rt.db.is_sqlite:
        return await _group_commit(rt, req, known)
    if known is not None:
        written = await _write_reports(rt, req, known, received)
        if written is not None:
            return written
    (result,) = await asyncio.to_thread(apply_group, rt, [req])  # new or lost node, new facts
    if isinstance(result, Exception):
        raise result
    return result


async def _from_memo(
    rt: Runtime, req: SyncRequest, memos: SyncMemos, received: float
) -> SyncReply | None:
    """The reply from the node's kept read, without a statement: a sync that changes
    nothing; on PostgreSQL also one with reports to apply (written as read by the memo,
    ``SyncMemos.ahead``). None: the memo cannot tell (or the node was lost meanwhile)."""
    kept = memos.answer(req)
    if kept is not None:  # nothing of the node changed since a read that answers this
        return _answered(rt, req, kept)
    ahead = None if rt.db.is_sqlite else memos.ahead(req)
    if ahead is None:
        return None
    return await _write_reports(rt, req, ahead, received)


async def _group_commit(rt: Runtime, req: SyncRequest, known: QuickSync | None) -> SyncReply:
    """SQLite: the sync's writes in the next group commit; its reply after that commit."""
    groups = _groups_of(rt)
    waiting = _Waiting(req, groups.loop.create_future(), known)
    if known is not None:
        _start_flusher(rt)
    groups.waiting.append(waiting)
    if groups.writer is None:
        groups.writer = groups.loop.create_task(_write_groups(rt, groups))
    return await waiting.reply


def _read(rt: Runtime, req: SyncRequest) -> SyncReply:
    s = rt.settings
    with rt.db.read() as session:
        node = get_node(session, req.node.name)
        return desired_state(
            session, node, req, s.checkpoints, s.agent_sync_interval_s, s.node_timeout_s
        )


async def sync(rt: Runtime, req: SyncRequest) -> SyncReply:
    event = rt.notifier.node_event(req.node.name)
    started = time.perf_counter()
    reply = await _apply_and_read(rt, req, event, started)
    rt.metrics.sync_duration.observe(time.perf_counter() - started)
    wait_s = min(req.wait_s, rt.settings.long_poll_s, rt.settings.node_timeout_s / 2)
    if wait_s <= 0 or needs_action(req, reply):
        return reply
    try:
        await asyncio.wait_for(event.wait(), timeout=wait_s)
    except TimeoutError:
        return reply
    return await asyncio.to_thread(_read, rt, req)
