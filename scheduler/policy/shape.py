"""The cluster's shape: what a snapshot's nodes say that does not change from cycle to cycle.

A cycle's pieces index the nodes before they decide anything: the pool's best-fit order
and GPU classes, every GPU's type, the healthy capacity, the timeline's GPU kinds. All
of it follows from each node's name, state and GPUs (index, type, memory, health), not
from who holds the GPUs, and a cluster keeps that shape for thousands of cycles while
the allocations change at every one. ``shape_of(nodes)`` works it out once per shape and
returns the same ``NodeShape`` for any snapshot whose nodes have that shape.

Invariant: a ``NodeShape`` is a function of its ``key`` alone, the nodes' shape in
snapshot order: a node that changes its state, a GPU's health, type or memory, or a
node that comes or goes makes another key, and so another shape. The cache is keyed by
that content, never by identity, so a server that builds fresh views every cycle finds
its shape again, and a changed cluster never sees a stale one. Each distinct node key
gets a small id, never reused, so a shape is looked up by a tuple of ints. Views are
immutable, so an object's key id is remembered while the memo holds the object (its
id cannot be reused meanwhile): the simulator, whose unchanged nodes keep their view
objects, skips the per-GPU work of the key; and the pieces of one cycle, which all ask
for the same nodes tuple, get the last answer at once.

Cost: O(1) for the nodes tuple of the last call, O(nodes) for views seen before, O(GPUs)
for new ones, O(GPUs) once per new shape. At most ``SHAPES`` shapes and ``NODE_KEYS``
node keys and views are kept; past that the oldest go.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from scheduler.domain.snapshot import NodeView
from scheduler.domain.status import NodeState

SHAPES = 8  # cluster shapes kept (a server whose nodes flap between a few states)
NODE_KEYS = 4_096  # node keys, and node views whose key id is remembered

Kind = tuple[str, int]  # a GPU's casefolded type and memory
GpuKey = tuple[int, str, int, bool]  # index, type, memory, healthy
NodeKey = tuple[str, NodeState, tuple[GpuKey, ...]]
Match = tuple[str | None, int | None]  # (casefolded type or None, least memory or None)

_gpu_key = attrgetter("index", "gpu_type", "memory_mib", "healthy")


@dataclass(slots=True)
class NodeShape:
    """The nodes' shape and what follows from it (see the module). Read-only to callers,
    but for the memo dicts ``matches`` and ``capacities``, which only ever grow."""

    key: tuple[NodeKey, ...]
    order: tuple[int, ...]  # snapshot positions in (GPU count, name) order
    ids: dict[str, int]  # node name -> its position in that order
    up: list[bool]  # per position: schedulable
    classes_of: list[dict[int, int]]  # per position: GPU index -> class id
    single: list[int]  # per position: its one class id, -1 when mixed or without GPUs
    healthy: list[frozenset[int]]  # per position: healthy GPU indices
    width: int  # the most GPUs on one node
    up_count: int  # how many nodes are schedulable
    capacity: int  # healthy GPUs on schedulable nodes
    gpu_types: dict[tuple[str, int], str]  # every GPU's type by (node, index)
    kinds: dict[tuple[str, int], Kind]  # (type, memory) -> its Kind, healthy GPUs of up nodes
    usable: list[dict[int, Kind]]  # per up node in order: healthy GPU index -> Kind
    classes: dict[tuple[str, int], int] = field(default_factory=dict)  # Kind -> class id
    matches: dict[Match, frozenset[int]] = field(default_factory=dict)
    capacities: dict[frozenset[int], list[int]] = field(default_factory=dict)

    def views(self, nodes: Sequence[NodeView]) -> tuple[NodeView, ...]:
        """The snapshot's views (of this shape) in (GPU count, name) order."""
        return tuple(map(nodes.__getitem__, self.order))

    def up_views(self, nodes: Sequence[NodeView]) -> list[NodeView]:
        """The schedulable ones, in the same order (the ``usable`` list's order)."""
        return [nodes[i] for i, up in zip(self.order, self.up, strict=True) if up]


_SHAPES: dict[tuple[int, ...], NodeShape] = {}  # by the nodes' key ids, in snapshot order
_IDS: dict[NodeKey, int] = {}  # a node's key -> its id (ids are never reused)
_VIEWS: dict[int, tuple[NodeView, int]] = {}  # id(view) -> (the view, its key's id)
_next_id = itertools.count()
_last: list[tuple[Sequence[NodeView], NodeShape]] = []  # the last call's nodes and shape


def shape_of(nodes: Sequence[NodeView]) -> NodeShape:
    """The shape of these nodes, worked out once per distinct shape (see the module)."""
    if not isinstance(nodes, tuple):
        nodes = tuple(nodes)  # a list may change: only a tuple is remembered by identity
    if _last and _last[0][0] is nodes:  # the pieces of one cycle ask for the same nodes
        return _last[0][1]
    key = tuple(map(_key_id, nodes))
    found = _SHAPES.get(key)
    if found is None:
        if len(_SHAPES) >= SHAPES:
            _SHAPES.pop(next(iter(_SHAPES), key), None)
        found = _SHAPES[key] = _build(tuple(map(_node_key, nodes)), nodes)
    _last[:] = [(nodes, found)]
    return found


def _key_id(node: NodeView) -> int:
    """A small int per distinct node key: the shape's key hashes ints, not every GPU."""
    known = _VIEWS.get(id(node))
    if known is not None and known[0] is node:
        return known[1]
    key = _node_key(node)
    found = _IDS.get(key)
    if found is None:
        if len(_IDS) >= NODE_KEYS:
            _IDS.clear()  # ids are not reused: the shapes keyed by old ones are only missed
        found = _IDS[key] = next(_next_id)
    if len(_VIEWS) >= NODE_KEYS:
        _VIEWS.pop(next(iter(_VIEWS), id(node)), None)
    _VIEWS[id(node)] = (node, found)
    return found


def _node_key(node: NodeView) -> NodeKey:
    return (node.name, node.state, tuple(map(_gpu_key, node.gpus)))


def _build(key: tuple[NodeKey, ...], nodes: Sequence[NodeView]) -> NodeShape:
    order = tuple(sorted(range(len(nodes)), key=lambda i: (len(nodes[i].gpus), nodes[i].name)))
    views = [nodes[i] for i in order]
    up = [n.state is NodeState.UP for n in views]
    healthy = [frozenset(g.index for g in n.gpus if g.healthy) for n in views]
    shape = NodeShape(
        key=key,
        order=order,
        ids={n.name: i for i, n in enumerate(views)},
        up=up,
        classes_of=[],
        single=[],
        healthy=healthy,
        width=max((len(n.gpus) for n in views), default=0),
        up_count=sum(up),
        capacity=sum(sum(g.healthy for g in n.gpus) for n, u in zip(views, up, strict=True) if u),
        gpu_types={(n.name, g.index): g.gpu_type for n in nodes for g in n.gpus},
        kinds={},
        usable=[],
    )
    _classify(shape, views)
    return shape


def _classify(shape: NodeShape, views: Sequence[NodeView]) -> None:
    """GPU classes per node (the pool's index) and the kinds of the up nodes' healthy
    GPUs (the timeline's), each kind one tuple shared by all its GPUs."""
    classes, kinds = shape.classes, shape.kinds
    for node, up in zip(views, shape.up, strict=True):
        of = {
            g.index: classes.setdefault((g.gpu_type.casefold(), g.memory_mib), len(classes))
            for g in node.gpus
        }
        shape.classes_of.append(of)
        distinct = set(of.values())
        shape.single.append(distinct.pop() if len(distinct) == 1 else -1)
        if up:
            shape.usable.append(
                {
                    g.index: kinds.setdefault(
                        (g.gpu_type, g.memory_mib), (g.gpu_type.casefold(), g.memory_mib)
                    )
                    for g in node.gpus
                    if g.healthy
                }
            )
