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
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

from scheduler.domain.sync import SyncReply, SyncRequest
from scheduler.runtime import Runtime
from scheduler.store.agent_sync import apply_sync, desired_state, needs_action
from scheduler.store.attempts import Effects
from scheduler.store.models import utcnow
from scheduler.store.nodes import get_node

MAX_GROUP = 64  # syncs per transaction: bounds how long one write holds the lock


@dataclass
class _Waiting:
    req: SyncRequest
    reply: asyncio.Future[SyncReply]


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


def apply_group(rt: Runtime, reqs: list[SyncRequest]) -> list[SyncReply | Exception]:
    """Apply ``reqs`` in one write transaction, each in a savepoint; one result each.

    A sync that raises is rolled back to its savepoint and its result is the error;
    the others commit together. Wakes the agents and the cycle after the commit."""
    s = rt.settings
    results: list[SyncReply | Exception] = []
    effects = Effects()
    with rt.db.write() as session:
        for req in reqs:
            try:
                with session.begin_nested():
                    node, changed = apply_sync(session, req, utcnow(), s.retry)
                    reply = desired_state(
                        session,
                        node,
                        req,
                        s.checkpoints,
                        s.agent_sync_interval_s,
                        s.node_timeout_s,
                    )
            except Exception as exc:  # that agent's answer; the others go on
                results.append(exc)
                continue
            effects.merge(changed)
            results.append(reply)
    rt.notifier.notify(effects)
    return results


async def _write_groups(rt: Runtime, groups: SyncGroups) -> None:
    """Commit the waiting syncs a group at a time until none waits."""
    try:
        while groups.waiting:
            group, groups.waiting = groups.waiting[:MAX_GROUP], groups.waiting[MAX_GROUP:]
            try:
                results = await asyncio.to_thread(apply_group, rt, [w.req for w in group])
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


async def _apply_and_read(rt: Runtime, req: SyncRequest) -> SyncReply:
    if not rt.db.is_sqlite:
        (result,) = await asyncio.to_thread(apply_group, rt, [req])
        if isinstance(result, Exception):
            raise result
        return result
    groups = _groups_of(rt)
    waiting = _Waiting(req, groups.loop.create_future())
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
    reply = await _apply_and_read(rt, req)
    wait_s = min(req.wait_s, rt.settings.long_poll_s, rt.settings.node_timeout_s / 2)
    if wait_s <= 0 or needs_action(req, reply):
        return reply
    try:
        await asyncio.wait_for(event.wait(), timeout=wait_s)
    except TimeoutError:
        return reply
    return await asyncio.to_thread(_read, rt, req)
