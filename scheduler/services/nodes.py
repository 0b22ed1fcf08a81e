"""Node use cases: list, show, drain, undrain."""

from __future__ import annotations

from scheduler.domain.views import NodeInfo, NodeList
from scheduler.runtime import Runtime
from scheduler.store import nodes as store_nodes
from scheduler.store.views import node_infos


def list_nodes(rt: Runtime) -> NodeList:
    with rt.db.read() as session:
        return NodeList(nodes=node_infos(session, store_nodes.list_nodes(session)))


def get_node(rt: Runtime, name: str) -> NodeInfo:
    with rt.db.read() as session:
        return node_infos(session, [store_nodes.get_node(session, name)], detail=True)[0]


def set_drained(rt: Runtime, name: str, drained: bool, reason: str | None = None) -> NodeInfo:
    """A drained node keeps its running attempts and gets no new placement."""
    with rt.db.write() as session:
        node = store_nodes.set_drained(session, name, drained, reason)
        info = node_infos(session, [node], detail=True)[0]
    rt.notifier.wake([name], schedule=not drained)
    return info
