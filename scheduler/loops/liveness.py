"""Liveness: a node that has not synced for ``node_timeout_s`` is lost.

Its running parts end as ``node_lost`` and their GPUs are released only now, after
the timeout, so a partitioned agent's processes cannot overlap a new attempt for
longer than that. Their jobs are requeued keeping their place.
"""

from __future__ import annotations

import logging

from scheduler.loops.base import Loop
from scheduler.runtime import Runtime
from scheduler.store.attempts import Effects, live_parts_on_node, part_lost
from scheduler.store.models import utcnow
from scheduler.store.nodes import NODE_LOST, stale_nodes

log = logging.getLogger("corral.loops.liveness")


def mark_lost_nodes(rt: Runtime) -> list[str]:
    now = utcnow()
    effects = Effects()
    lost: list[str] = []
    with rt.db.read() as session:
        if not stale_nodes(session, now, rt.settings.node_timeout_s):
            return lost
    with rt.db.write() as session:
        for node in stale_nodes(session, now, rt.settings.node_timeout_s):
            node.state = NODE_LOST
            lost.append(node.name)
            for part in live_parts_on_node(session, node.id):
                effects.merge(part_lost(session, part, now, rt.settings.retry))
    for name in lost:
        log.warning("node %s missed syncs for %.0fs: lost", name, rt.settings.node_timeout_s)
    rt.notifier.notify(effects)
    return lost


def liveness_loop(rt: Runtime) -> Loop:
    return Loop(
        name="liveness",
        interval_s=rt.settings.liveness_interval_s,
        run_once=lambda: mark_lost_nodes(rt),
    )
