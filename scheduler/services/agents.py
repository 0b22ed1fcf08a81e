"""The agent sync, server side: apply what the agent reports, answer its desired state.

A long poll: when the agent has nothing to do the reply waits until the node's
desired state changes (the Notifier) or ``wait_s`` passes. The node's event is taken
before the desired state is read, so a change committed in between is not missed.
"""

from __future__ import annotations

import asyncio

from scheduler.domain.sync import SyncReply, SyncRequest
from scheduler.runtime import Runtime
from scheduler.store.agent_sync import apply_sync, desired_state, needs_action
from scheduler.store.models import utcnow
from scheduler.store.nodes import get_node


def _apply_and_read(rt: Runtime, req: SyncRequest) -> SyncReply:
    s = rt.settings
    with rt.db.write() as session:
        node, effects = apply_sync(session, req, utcnow(), s.retry)
        reply = desired_state(
            session, node, req, s.checkpoints, s.agent_sync_interval_s, s.node_timeout_s
        )
    rt.notifier.notify(effects)
    return reply


def _read(rt: Runtime, req: SyncRequest) -> SyncReply:
    s = rt.settings
    with rt.db.read() as session:
        node = get_node(session, req.node.name)
        return desired_state(
            session, node, req, s.checkpoints, s.agent_sync_interval_s, s.node_timeout_s
        )


async def sync(rt: Runtime, req: SyncRequest) -> SyncReply:
    event = rt.notifier.node_event(req.node.name)
    reply = await asyncio.to_thread(_apply_and_read, rt, req)
    wait_s = min(req.wait_s, rt.settings.long_poll_s, rt.settings.node_timeout_s / 2)
    if wait_s <= 0 or needs_action(req, reply):
        return reply
    try:
        await asyncio.wait_for(event.wait(), timeout=wait_s)
    except TimeoutError:
        return reply
    return await asyncio.to_thread(_read, rt, req)
