"""The free GPUs during one decision pass, indexed so that best-fit queries are cheap.

A ``FreePool`` owns, for every node of the snapshot, which of its GPUs are free and
whether it is idle. Invariant: a GPU is free iff its node is schedulable, it is healthy,
it was unallocated in the snapshot and has not been taken or withheld since (or was
released since); a node is idle iff none of its GPUs is allocated, taken or withheld.
``nodes`` are the snapshot's views, untouched (in GPU count, name order). ``take``
refuses (ValueError) a GPU that is not free, named twice or unknown, and a node that is
not schedulable. A copy shares the per-node sets, which a pool replaces, never mutates.

The index: GPUs fall into classes ``(type, memory)``; a request matches a set of classes
(computed once per request shape). For each such set the pool keeps the up nodes in
buckets by how many matching GPUs they have free, each bucket a heap of node ids, ids
numbered by (GPU count, name): the best-fit order. "The node with the fewest matching
free GPUs that still has g" is the smallest valid id of the first non-empty bucket from
g up: O(GPUs per node) per query, not O(nodes). Entries go stale when a node moves to
another bucket and are dropped when they reach the top of their heap.

Example: ``a`` has 8 A100 free, ``b`` 2 of 8 (indices 5, 7), ``h`` 4 H100 free.
Buckets for "any GPU": 2 -> [b], 4 -> [h], 8 -> [a]; for "A100": 2 -> [b], 8 -> [a].
``tightest(2 GPUs)`` is ``b`` with ``(5, 7)``; after ``take`` of ``b:5, b:7`` b sits in
bucket 0 and ``tightest(2 GPUs)`` is ``h``, ``tightest(2 A100)`` is ``a``.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from heapq import heappop, heappush
from itertools import compress, repeat
from operator import and_, attrgetter, is_, not_

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import GpuRef, NodeView, ResourceRequest
from scheduler.policy.shape import NODE_KEYS, Match, shape_of


def match_of(request: ResourceRequest) -> Match:
    """What a request asks of each GPU: its type (case-insensitive) and least memory."""
    gpu_type = None if request.gpu_type is None else request.gpu_type.casefold()
    return gpu_type, request.gpu_memory_mib


@dataclass(slots=True)
class _Layout:
    """What does not change during a cycle; shared by a pool and its copies. All but
    ``views`` is the nodes' shape, shared with every cycle of that shape: read-only but
    for the memos ``matches`` and ``capacities``, which depend on the shape alone."""

    views: tuple[NodeView, ...]  # by node id: (GPU count, name) order
    ids: dict[str, int]
    up: list[bool]
    classes_of: list[dict[int, int]]  # per node: GPU index -> class id
    single: list[int]  # per node: its one class id, -1 when mixed or without GPUs
    healthy: list[frozenset[int]]
    width: int  # the most GPUs on one node
    up_count: int  # how many nodes are schedulable
    classes: dict[tuple[str, int], int] = field(default_factory=dict)
    matches: dict[Match, frozenset[int]] = field(default_factory=dict)
    capacities: dict[frozenset[int], list[int]] = field(default_factory=dict)

    def match(self, request: ResourceRequest) -> frozenset[int]:
        key = match_of(request)
        found = self.matches.get(key)
        if found is None:
            gpu_type, memory = key
            found = frozenset(
                cid
                for (kind, mib), cid in self.classes.items()
                if (gpu_type is None or kind == gpu_type) and (memory is None or mib >= memory)
            )
            self.matches[key] = found
        return found

    def capacity(self, cls: frozenset[int]) -> list[int]:
        """Per up node, ascending: its healthy GPUs of these classes, allocated or not."""
        found = self.capacities.get(cls)
        if found is None:
            found = sorted(
                sum(1 for g in self.healthy[i] if self.classes_of[i][g] in cls)
                for i in range(len(self.views))
                if self.up[i]
            )
            self.capacities[cls] = found
        return found


def _layout(nodes: Iterable[NodeView]) -> _Layout:
    """The nodes' layout: their shape (``shape.shape_of``, kept across cycles) with these
    views in its order."""
    views = nodes if isinstance(nodes, tuple) else tuple(nodes)
    shape = shape_of(views)
    return _Layout(
        views=shape.views(views),
        ids=shape.ids,
        up=shape.up,
        classes_of=shape.classes_of,
        single=shape.single,
        healthy=shape.healthy,
        width=shape.width,
        up_count=shape.up_count,
        classes=shape.classes,
        matches=shape.matches,
        capacities=shape.capacities,
    )


_NONE: frozenset[int] = frozenset()
_index, _holder, _healthy = attrgetter("index"), attrgetter("allocated_to"), attrgetter("healthy")


_FREE_AND_HELD: dict[int, tuple[NodeView, tuple[frozenset[int], frozenset[int]]]] = {}


def _free_and_held(view: NodeView) -> tuple[frozenset[int], frozenset[int]]:
    """The node's healthy unallocated GPU indices, and its allocated ones, sorted out in C
    (a cycle does it for every node).

    Remembered by view (an immutable object, kept in the memo so that its id is not
    reused meanwhile), like ``shape``'s node keys: the simulator keeps the view of a node
    whose GPUs did not change, a server's fresh views are only missed. At most
    ``NODE_KEYS`` views; past that the oldest go."""
    known = _FREE_AND_HELD.get(id(view))
    if known is not None and known[0] is view:
        return known[1]
    gpus = view.gpus
    indices = list(map(_index, gpus))
    unheld = list(map(is_, map(_holder, gpus), repeat(None)))
    free = frozenset(compress(indices, map(and_, map(_healthy, gpus), unheld)))
    found = free, frozenset(compress(indices, map(not_, unheld)))
    if len(_FREE_AND_HELD) >= NODE_KEYS:
        _FREE_AND_HELD.pop(next(iter(_FREE_AND_HELD)))
    _FREE_AND_HELD[id(view)] = (view, found)
    return found


@dataclass(slots=True)
class _Index:
    """Up nodes by how many GPUs of one class set they have free (see the module)."""

    count: list[int]  # per node id; -1 for a node that is not up
    buckets: list[list[int]]  # by free count: heaps of node ids, stale entries allowed

    def copy(self) -> _Index:
        return _Index(self.count.copy(), [b.copy() for b in self.buckets])


class FreePool:
    """The working set of free GPUs of a pass (the ``context.Pool`` protocol)."""

    __slots__ = ("_free", "_gpuless", "_held", "_idle", "_indexes", "_layout", "nodes")

    def __init__(self, nodes: Iterable[NodeView]) -> None:
        layout = _layout(nodes)
        self._layout = layout
        self.nodes: Sequence[NodeView] = layout.views
        # per node id; a pool never mutates these sets (it replaces them), so copies share them
        self._free: list[frozenset[int]] = []
        self._held: list[frozenset[int]] = []
        for view, up in zip(layout.views, layout.up, strict=True):
            free, held = _free_and_held(view)
            self._free.append(free if up else _NONE)
            self._held.append(held)
        self._idle = [i for i, held in enumerate(self._held) if layout.up[i] and not held]
        self._indexes: dict[frozenset[int], _Index] = {}
        self._gpuless: list[str] | None = None  # up nodes for jobs without GPUs, in order

    def copy(self) -> FreePool:
        """An independent pool in the same state (the layout is shared: it never changes)."""
        other = FreePool.__new__(FreePool)
        other._layout = self._layout
        other.nodes = self.nodes
        other._free = self._free.copy()  # the sets are shared: changes replace, never mutate
        other._held = self._held.copy()
        other._idle = self._idle.copy()
        other._indexes = {cls: index.copy() for cls, index in self._indexes.items()}
        other._gpuless = self._gpuless
        return other

    # -- changes -------------------------------------------------------------------

    def take(self, placement: Placement) -> None:
        """Allocate the placement's GPUs; ValueError if any is not free (a placement bug)."""
        job = placement.job_id
        wanted: dict[str, set[int]] = {}
        for ref in placement.gpus:
            indices = wanted.setdefault(ref.node, set())
            if ref.index in indices:
                raise ValueError(f"job {job}: GPU {ref.node}:{ref.index} placed twice")
            indices.add(ref.index)
        unknown = sorted(name for name in wanted if name not in self._layout.ids)
        if unknown:
            raise ValueError(f"job {job}: no such node {unknown}")
        for name, indices in wanted.items():
            i = self._layout.ids[name]
            if not self._layout.up[i]:
                state = self._layout.views[i].state.value
                raise ValueError(f"job {job}: node {name} is {state}")
            if not indices <= self._free[i]:
                missing = sorted(indices - self._free[i])
                raise ValueError(f"job {job}: GPUs {missing} of {name} not free")
        for name, indices in wanted.items():
            self._hold(self._layout.ids[name], indices)

    def withhold(self, gpus: Iterable[GpuRef]) -> None:
        """Make these GPUs unavailable as if taken, whatever they are now (a reservation)."""
        for i, indices in self._by_node(gpus).items():
            self._hold(i, indices)

    def release(self, gpus: Iterable[GpuRef]) -> None:
        """What-if: these allocated GPUs are free again (a preemption, a stopping attempt).

        ValueError if one is free (released twice). A GPU the snapshot does not show (no
        longer present on its node) is skipped: there is nothing to free. An unhealthy GPU,
        or one on a node that is not schedulable, stops being allocated but is not free.
        """
        by_node = self._by_node(gpus, skip_unknown=True)
        for i, indices in by_node.items():
            if not indices <= self._held[i]:
                name = self._layout.views[i].name
                raise ValueError(f"GPUs {sorted(indices - self._held[i])} of {name} not allocated")
        for i, indices in by_node.items():
            held = self._held[i] = self._held[i] - indices
            if self._layout.up[i]:
                self._set_free(i, self._free[i] | (indices & self._layout.healthy[i]))
                if not held:
                    insort(self._idle, i)
            self._reindex(i)

    def _by_node(
        self, gpus: Iterable[GpuRef], *, skip_unknown: bool = False
    ) -> dict[int, set[int]]:
        by_node: dict[int, set[int]] = {}
        node_id, classes_of = self._layout.ids.get, self._layout.classes_of  # the hot loop
        for ref in gpus:
            i, index = node_id(ref.node), ref.index
            if i is None or index not in classes_of[i]:
                if skip_unknown:
                    continue
                raise ValueError(f"no such GPU {ref.node}:{index}")
            found = by_node.get(i)
            if found is None:
                by_node[i] = {index}
            else:
                found.add(index)
        return by_node

    def _hold(self, i: int, indices: set[int]) -> None:
        if not self._held[i] and self._layout.up[i]:
            del self._idle[bisect_left(self._idle, i)]
        self._held[i] = self._held[i] | indices  # new sets: copies share the old ones
        self._set_free(i, self._free[i] - indices)
        self._reindex(i)

    def _set_free(self, i: int, free: frozenset[int]) -> None:
        if bool(free) != bool(self._free[i]):
            self._gpuless = None  # the order for jobs without GPUs changes
        self._free[i] = free

    def _reindex(self, i: int) -> None:
        for cls, index in self._indexes.items():
            count = self._count(i, cls)
            if count != index.count[i]:
                index.count[i] = count
                if count:
                    heappush(index.buckets[count], i)

    # -- queries -------------------------------------------------------------------

    def tightest(self, request: ResourceRequest) -> tuple[str, tuple[int, ...]] | None:
        """The up node with the fewest matching free GPUs that still has ``request.gpus``
        (ties: fewer GPUs in all, then name), and the lowest ``request.gpus`` of them."""
        cls = self._layout.match(request)
        if not cls or request.gpus <= 0:
            return None
        index = self._index(cls)
        count = index.count
        for k in range(request.gpus, len(index.buckets)):
            heap = index.buckets[k]
            while heap:
                i = heap[0]
                if count[i] == k:
                    return self._layout.views[i].name, self._lowest(i, cls, request.gpus)
                heappop(heap)
        return None

    def idle_nodes(self, request: ResourceRequest, count: int) -> list[tuple[str, tuple[int, ...]]]:
        """The first ``count`` idle up nodes, in (GPU count, name) order, with
        ``request.gpus`` matching free GPUs, each with the lowest of them (fewer if fewer)."""
        cls = self._layout.match(request)
        chosen: list[tuple[str, tuple[int, ...]]] = []
        if not cls:
            return chosen
        for i in self._idle:
            if self._count(i, cls) >= request.gpus:
                chosen.append((self._layout.views[i].name, self._lowest(i, cls, request.gpus)))
                if len(chosen) == count:
                    break
        return chosen

    def gpuless_nodes(self, count: int) -> list[str]:
        """The first ``count`` up nodes, those without a free GPU first, then by name."""
        if self._gpuless is None:
            views, free, up = self._layout.views, self._free, self._layout.up
            order = sorted((bool(free[i]), views[i].name) for i in range(len(views)) if up[i])
            self._gpuless = [name for _, name in order]
        return self._gpuless[:count]

    def free_indices(self, node: str, request: ResourceRequest) -> tuple[int, ...]:
        """The node's free GPUs that match the request, lowest index first."""
        i = self._layout.ids[node]
        return self._lowest(i, self._layout.match(request), len(self._free[i]))

    def most_free(self, request: ResourceRequest) -> int:
        """The most matching free GPUs on one up node."""
        cls = self._layout.match(request)
        if not cls:
            return 0
        index = self._index(cls)
        for k in range(len(index.buckets) - 1, 0, -1):
            heap = index.buckets[k]
            while heap:
                if index.count[heap[0]] == k:
                    return k
                heappop(heap)
        return 0

    def up_count(self) -> int:
        """How many nodes are schedulable."""
        return self._layout.up_count

    def capacity(self, request: ResourceRequest) -> int:
        """The most healthy matching GPUs on one up node, free or not (0: no up node)."""
        capacities = self._layout.capacity(self._layout.match(request))
        return capacities[-1] if capacities else 0

    def holders(self, request: ResourceRequest) -> int:
        """How many up nodes have ``request.gpus`` healthy matching GPUs, free or not."""
        capacities = self._layout.capacity(self._layout.match(request))
        return len(capacities) - bisect_left(capacities, request.gpus)

    def idle_holders(self, request: ResourceRequest) -> int:
        """How many idle up nodes have ``request.gpus`` matching free GPUs."""
        cls = self._layout.match(request)
        return sum(1 for i in self._idle if self._count(i, cls) >= request.gpus) if cls else 0

    def is_free(self, ref: GpuRef) -> bool:
        i = self._layout.ids.get(ref.node)
        return i is not None and ref.index in self._free[i]

    def _count(self, i: int, cls: frozenset[int]) -> int:
        single = self._layout.single[i]
        if single >= 0:
            return len(self._free[i]) if single in cls else 0
        of = self._layout.classes_of[i]
        return sum(1 for g in self._free[i] if of[g] in cls)

    def _lowest(self, i: int, cls: frozenset[int], n: int) -> tuple[int, ...]:
        free, single = self._free[i], self._layout.single[i]
        if single >= 0:
            return tuple(sorted(free)[:n]) if single in cls else ()
        of = self._layout.classes_of[i]
        return tuple(sorted(g for g in free if of[g] in cls)[:n])

    def _index(self, cls: frozenset[int]) -> _Index:
        index = self._indexes.get(cls)
        if index is None:
            up = self._layout.up
            count = [self._count(i, cls) if up[i] else -1 for i in range(len(up))]
            buckets: list[list[int]] = [[] for _ in range(self._layout.width + 1)]
            for i, k in enumerate(count):
                if k > 0:
                    buckets[k].append(i)  # ids ascending: already a heap
            index = self._indexes[cls] = _Index(count, buckets)
        return index
