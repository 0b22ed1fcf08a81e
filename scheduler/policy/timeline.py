"""When GPUs free up: the what-if behind the backfill pass's reservations.

Invariant: for every GPU of every up node the timeline holds the time by which it is
free at the latest, from the snapshot and the pass so far: ``now`` when it is free or
its attempt is stopping; ``max(now, ends_by)`` for an attempt with a time limit; ``inf``
for one without (it never ends by itself). A placement of this pass holds its GPUs
until ``now + time_limit_s``. With ``params.reserve_preemptible_gpus``, a preemptible
running attempt's GPUs count as free from ``max(now, started_at + min_runtime_s)`` when that is
sooner: the preemption piece may stop it from then on, but never for a job of the
attempt's own queue (the queue's order already chose between them, and reclaim never
takes a victim from the reserved job's own queue): for a request of that queue they
count by the time limit alone (``earliest(request, queue)``). Reserved GPUs leave the
timeline (``block``), so the reservations of a pass are disjoint.

``earliest(request)``: for one node, the node whose ``gpus``-th soonest matching
healthy GPU frees first (ties: node order, GPU count then name), and those GPUs; for
several nodes, whole nodes (all their GPUs), each free when its last allocated GPU is,
the ``nodes`` soonest ones.

Example (now = 0): node ``a`` (8 GPUs): 0-3 free, 4-5 held by a job that ends at 600,
6-7 by a job without a time limit. 6 GPUs: a's 6th soonest GPU frees at 600 ->
``a:0-5`` at 600. 8 GPUs: ``a:0-7`` at inf ("until running jobs end").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from heapq import nsmallest
from itertools import repeat
from operator import attrgetter
from typing import Any

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import (
    GpuRef,
    NodeView,
    PendingJob,
    ResourceRequest,
    RunningJob,
    Snapshot,
)
from scheduler.policy.context import PolicyParams
from scheduler.policy.pool import Match, match_of
from scheduler.policy.shape import NODE_KEYS, Kind, shape_of

INF = math.inf
_index, _holder = attrgetter("index"), attrgetter("allocated_to")


@dataclass(slots=True)
class _Node:
    view: NodeView
    free_at: dict[int, float]  # GPU index -> when it is free at the latest
    usable: dict[int, Kind]  # healthy GPUs that no reservation holds
    holders: dict[int, int | None]  # GPU index -> the job id holding it (None: free)
    reserved: bool = False  # some of its GPUs are reserved: never whole for another job
    # GPU index -> (queue, when free by its time limit) for GPUs whose preemptible holder
    # counts as free early (at min runtime): for a job of that queue, the later time holds
    early: dict[int, tuple[str, float]] = field(default_factory=dict)
    early_queues: frozenset[str] = frozenset()
    times: dict[tuple[Match, str | None], tuple[float, ...]] = field(default_factory=dict)
    latest: dict[str | None, float] = field(default_factory=dict)  # ``last_free``, by queue

    def free_times(self, queue: str | None) -> dict[int, float]:
        """When each GPU is free for a job of ``queue`` (None: of no particular queue)."""
        if queue is None or queue not in self.early_queues:
            return self.free_at
        own = {i: at for i, (holder, at) in self.early.items() if holder == queue}
        return {**self.free_at, **own}

    def soonest(self, key: Match, kinds: frozenset[Kind], queue: str | None) -> tuple[float, ...]:
        """When its usable GPUs of these kinds free up, soonest first (a tuple of floats:
        the garbage collector stops following it, a thousand nodes' worth cost nothing)."""
        cache = (key, queue if queue in self.early_queues else None)
        found = self.times.get(cache)
        if found is None:
            free_at = self.free_times(cache[1])
            found = tuple(sorted(free_at[i] for i, kind in self.usable.items() if kind in kinds))
            self.times[cache] = found
        return found

    def first(self, kinds: frozenset[Kind], count: int, queue: str | None) -> list[int]:
        """The ``count`` usable GPUs of these kinds that free up first (ties: index)."""
        free_at = self.free_times(queue)
        return sorted(
            (i for i, kind in self.usable.items() if kind in kinds),
            key=lambda i: (free_at[i], i),
        )[:count]

    def last_free(self, queue: str | None, now: float) -> float:
        """When all its GPUs are free for a job of ``queue`` (``now`` without GPUs)."""
        key = queue if queue in self.early_queues else None
        found = self.latest.get(key)
        if found is None:
            found = self.latest[key] = max(self.free_times(key).values(), default=now)
        return found

    def changed(self) -> None:
        self.times.clear()
        self.latest.clear()


_Holders = tuple[list[int], list[int | None], dict[int, int | None]]
_HOLDERS: dict[int, tuple[NodeView, _Holders]] = {}
_BY_NODE: dict[int, tuple[RunningJob, tuple[tuple[str, tuple[int, ...]], ...]]] = {}


def _holders_of(view: NodeView) -> _Holders:
    """The node's GPU indices, their holders (job ids, None: free) in step, and the
    holders by index (read only). Remembered by view, as ``pool._free_and_held``."""
    known = _HOLDERS.get(id(view))
    if known is not None and known[0] is view:
        return known[1]
    indices = list(map(_index, view.gpus))  # per GPU, looked up in C
    holders = list(map(_holder, view.gpus))
    found = indices, holders, dict(zip(indices, holders, strict=True))
    _remember(_HOLDERS, view, found)
    return found


def _gpus_by_node(running: RunningJob) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The attempt's GPU indices by node, nodes in order of first appearance.
    Remembered by view: the simulator keeps an attempt's view between checkpoints."""
    known = _BY_NODE.get(id(running))
    if known is not None and known[0] is running:
        return known[1]
    grouped: dict[str, list[int]] = {}
    for ref in running.gpus:
        found = grouped.get(ref.node)
        if found is None:
            grouped[ref.node] = [ref.index]
        else:
            found.append(ref.index)
    result = tuple((name, tuple(indices)) for name, indices in grouped.items())
    _remember(_BY_NODE, running, result)
    return result


def _remember(memo: dict[int, tuple[Any, Any]], view: object, value: object) -> None:
    """Keep ``value`` for ``view`` by id, the view with it (so the id stays its own);
    at most ``NODE_KEYS`` entries: past that the oldest go."""
    if len(memo) >= NODE_KEYS:
        memo.pop(next(iter(memo)))
    memo[id(view)] = (view, value)


@dataclass(frozen=True, slots=True)
class Slot:
    """Where and when a job can start at the earliest: its GPUs and their time."""

    at: float  # epoch seconds; inf: only when attempts without a time limit end
    gpus: tuple[GpuRef, ...]


class Timeline:
    """The GPUs of the up nodes and when each frees up (see the module)."""

    def __init__(self, snapshot: Snapshot, params: PolicyParams) -> None:
        self.now = snapshot.now
        self._params = params
        self._running = {running.job_id: running for running in snapshot.running}
        shape = shape_of(snapshot.nodes)
        self._kinds = shape.kinds  # (type, memory) -> its one Kind (the shape's: read only)
        self._matching: dict[Match, frozenset[Kind]] = {}
        up = shape.up_views(snapshot.nodes)  # in (GPU count, name) order
        # by job id: when its GPUs free up (a job without a running attempt: never known)
        ends = self._ends()
        free_at = ends.get  # a free GPU (no holder, ``None``) is free now
        self._nodes: list[_Node] = []
        for view, usable in zip(up, shape.usable, strict=True):
            indices, holders, by_index = _holders_of(view)
            self._nodes.append(
                _Node(
                    view,
                    dict(zip(indices, map(free_at, holders, repeat(INF)), strict=True)),
                    usable.copy(),  # the shape's healthy GPUs: ``block`` takes some away
                    by_index,  # shared, read only
                )
            )
        self._by_name = {node.view.name: node for node in self._nodes}
        self._end_of = ends
        self._marked: set[str] = set()  # queues whose early GPUs are noted (``_mark_early``)
        self._settling: dict[str, list[RunningJob]] | None = None  # see ``_mark_early``

    def _ends(self) -> dict[int | None, float]:
        """When each running attempt's GPUs are free, by job id: ``now`` when it is stopping;
        else by its time limit (``inf`` without one), or, if it is preemptible and
        ``reserve_preemptible_gpus``, from when it may be preempted if that is sooner."""
        now = self.now
        ends: dict[int | None, float] = {None: now}  # a free GPU's holder: free now
        early = self._params.reserve_preemptible_gpus
        min_runtime_s = self._params.min_runtime_s
        for job_id, running in self._running.items():
            if running.stopping:
                ends[job_id] = now
                continue
            limit = running.time_limit_s  # ``ends_by``, inline
            at = INF if limit is None else max(now, running.started_at + limit)
            if running.preemptible and early:
                at = min(at, max(now, running.started_at + min_runtime_s))
            ends[job_id] = at
        return ends

    def _mark_early(self, queue: str) -> None:
        """Note the GPUs of ``queue``'s own attempts that count free early for other
        queues (``_Node.early``): a job of ``queue`` waits for them until their time limit.

        Once per queue, when a job of it first asks (``earliest``): a pass reserves for a
        few queues, and the GPUs of the others' attempts are never read for their own.
        Only preemptible attempts that are not stopping can count early (``_ends``):
        the others are skipped without working out their times."""
        if queue in self._marked or not self._params.reserve_preemptible_gpus:
            return
        self._marked.add(queue)
        if self._settling is None:
            self._settling = {}
            for running in self._running.values():
                if running.preemptible and not running.stopping:
                    found = self._settling.get(running.queue)
                    if found is None:
                        self._settling[running.queue] = [running]
                    else:
                        found.append(running)
        by_name, ends = self._by_name, self._end_of
        for running in self._settling.get(queue, ()):
            job_id, limit = running.job_id, running.time_limit_s
            late = INF if limit is None else max(self.now, running.started_at + limit)
            if late == ends[job_id]:
                continue
            early = (queue, late)
            for name, indices in _gpus_by_node(running):
                node = by_name.get(name)
                if node is None:
                    continue
                holders = node.holders
                mine = [index for index in indices if holders.get(index) == job_id]
                if mine:
                    node.early.update(dict.fromkeys(mine, early))
                    if queue not in node.early_queues:
                        node.early_queues |= {queue}

    def hold(self, placement: Placement, job: PendingJob) -> None:
        """A placement of this pass: its GPUs are busy until the job's time limit."""
        at = INF if job.time_limit_s is None else self.now + job.time_limit_s
        for ref in placement.gpus:
            node = self._by_name.get(ref.node)
            if node is not None:
                node.free_at[ref.index] = at
                node.early.pop(ref.index, None)
                node.changed()

    def block(self, gpus: Iterable[GpuRef]) -> None:
        """These GPUs are reserved: no later reservation may count on them."""
        for ref in gpus:
            node = self._by_name.get(ref.node)
            if node is not None:
                node.usable.pop(ref.index, None)
                node.reserved = True
                node.changed()

    def earliest(self, request: ResourceRequest, queue: str | None = None) -> Slot | None:
        """Where and when ``request``, of a job of ``queue``, can start first (see the
        module); None: never."""
        if request.gpus <= 0:
            return None
        if queue is not None:
            self._mark_early(queue)
        if request.nodes > 1:
            return self._whole_nodes(request, queue)
        return self._one_node(request, queue)

    def occupiers(self, gpus: Iterable[GpuRef], queue: str | None = None) -> tuple[int, ...]:
        """Attempt ids of the preemptible, not stopping, attempts holding any of ``gpus``,
        but those of ``queue`` (the reserved job's: never preempted for it)."""
        found: set[int] = set()
        for ref in gpus:
            node = self._by_name.get(ref.node)
            holder = None if node is None else node.holders.get(ref.index)
            running = None if holder is None else self._running.get(holder)
            if running is None or running.queue == queue:
                continue
            if running.preemptible and not running.stopping:
                found.add(running.attempt_id)
        return tuple(sorted(found))

    def _kinds_for(self, key: Match) -> frozenset[Kind]:
        found = self._matching.get(key)
        if found is None:
            gpu_type, memory = key
            found = self._matching[key] = frozenset(
                (kind, mib)
                for kind, mib in self._kinds.values()
                if (gpu_type is None or kind == gpu_type) and (memory is None or mib >= memory)
            )
        return found

    def _one_node(self, request: ResourceRequest, queue: str | None) -> Slot | None:
        key, g = match_of(request), request.gpus
        kinds = self._kinds_for(key)
        best: tuple[float, _Node] | None = None
        for node in self._nodes:
            times = node.soonest(key, kinds, queue)
            if len(times) >= g and (best is None or times[g - 1] < best[0]):
                best = (times[g - 1], node)
                if best[0] <= self.now:
                    break
        if best is None:
            return None
        at, node = best
        first = sorted(node.first(kinds, g, queue))
        return Slot(at, tuple(GpuRef(node.view.name, i) for i in first))

    def _whole_nodes(self, request: ResourceRequest, queue: str | None) -> Slot | None:
        key, g = match_of(request), request.gpus
        kinds = self._kinds_for(key)
        candidates = [
            (node.last_free(queue, self.now), order, node)
            for order, node in enumerate(self._nodes)
            if not node.reserved and len(node.soonest(key, kinds, queue)) >= g
        ]
        if len(candidates) < request.nodes:
            return None
        chosen = nsmallest(request.nodes, candidates, key=lambda c: (c[0], c[1]))
        gpus = sorted(
            GpuRef(node.view.name, gpu.index) for _, _, node in chosen for gpu in node.view.gpus
        )
        return Slot(max(at for at, _, _ in chosen), tuple(gpus))
