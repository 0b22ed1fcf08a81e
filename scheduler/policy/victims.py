"""Victims for ``preemption.reclaim``: which attempts may be stopped, in which order,
and the search for the fewest that make a waiting job fit.

``_eligible_victims``: preemptible, settled (``params.min_runtime_s``), not stopping
attempts whose GPUs the snapshot shows allocated, by queue, each queue's in victim
order: lower priority, then less work lost since the last checkpoint, then attempt id.
``_Search`` walks them for one job, the queue most over its fair share first (re-ranked
after every pick), and tries a what-if placement only when the node occupancy says the
job may fit (see ``preemption``'s module docstring for the rules).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, NamedTuple, cast

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import GpuRef, PendingJob, RunningJob
from scheduler.policy.context import Context
from scheduler.policy.holdings import Ledger, by_node

if TYPE_CHECKING:
    from scheduler.policy.preemption import _Run

_gpu_key = attrgetter("node", "index")  # a GpuRef as a plain (node, index) tuple


def _allocated(ctx: Context) -> set[tuple[str, int]]:
    """The GPUs the snapshot shows allocated, as (node, index): the only ones a what-if
    may release. Plain tuples: they hash in C, ``GpuRef`` in Python. Once per context."""
    found = cast("set[tuple[str, int]] | None", ctx.extra.get("reclaim_allocated"))
    if found is None:
        found = ctx.extra["reclaim_allocated"] = {
            (n.name, g.index)
            for n in ctx.snapshot.nodes
            for g in n.gpus
            if g.allocated_to is not None
        }
    return found


class _Victim(NamedTuple):  # a tuple: made for every settled attempt, every cycle
    running: RunningJob
    key: tuple[float, float, int]  # lower priority, less work lost, lower attempt id


_victim_order = itemgetter(1)  # ``_Victim.key``


def work_at_risk_s(now: float, running: RunningJob) -> float:
    """Seconds of work an attempt would lose if stopped now: since its last checkpoint,
    or since its start when it has none yet."""
    start, checkpoint = running.started_at, running.last_checkpoint_at
    since = checkpoint if checkpoint is not None and checkpoint > start else start
    return max(0.0, now - since)


def _eligible_victims(ctx: Context) -> dict[str, list[_Victim]]:
    """Preemptible, settled, not stopping attempts with GPUs, by queue, in victim order.

    An attempt whose GPUs the snapshot does not show allocated is left alone (a stale
    view: releasing them in a what-if would free GPUs that are not its).
    """
    now, min_runtime_s = ctx.snapshot.now, ctx.params.min_runtime_s
    shown = _allocated(ctx).__contains__
    by_queue: dict[str, list[_Victim]] = {}
    for running in ctx.snapshot.running:  # ~300 a cycle: the cheap tests first, inline
        if running.stopping or not running.preemptible:
            continue
        started, gpus = running.started_at, running.gpus
        if not gpus or now - started < min_runtime_s:
            continue
        if not all(map(shown, map(_gpu_key, gpus))):  # checked in C
            continue
        lost_gpu_s = work_at_risk_s(now, running) * len(gpus)
        key = (float(running.priority), lost_gpu_s, running.attempt_id)
        victims = by_queue.get(running.queue)
        if victims is None:
            victims = by_queue[running.queue] = []
        victims.append(_Victim(running, key))
    for victims in by_queue.values():
        victims.sort(key=_victim_order)
    return by_queue


CanGive = Callable[[Ledger, RunningJob], bool]


class _Search:
    """Victims for one job: walk them in preference order (the queue most over its share
    first, re-ranked after every pick), and try a what-if placement only when the node
    occupancy says the job may fit: a node with enough GPUs, or enough idle nodes."""

    def __init__(
        self,
        run: _Run,
        job: PendingJob,
        off: set[GpuRef],
        candidates: dict[str, list[_Victim]],
        can_give: CanGive,
    ) -> None:
        self.state, self.job, self.off, self.can_give = run, job, off, can_give
        self.trial = run.ledger.copy()
        self.left = {queue: iter(victims) for queue, victims in candidates.items() if victims}
        self.heap = [(-self.trial.over_share(queue), queue) for queue in self.left]
        heapq.heapify(self.heap)
        self.on_node: dict[str, list[RunningJob]] = {}  # chosen victims by node
        self.ready: set[str] = set()  # nodes idle once their victims go (multi-node jobs)
        self.off_at = by_node(off)  # ``off`` as ``Occupancy.usable`` takes it
        request = job.request
        self.idle_now = 0
        if request.nodes > 1:
            occupancy = run.occupancy
            self.idle_now = sum(
                1
                for node in occupancy.views
                if occupancy.idle_once(node, ())
                and occupancy.usable(node, request, (), self.off_at) >= request.gpus
            )

    def run(self) -> tuple[list[RunningJob], Placement] | None:
        """The victims (fewest needed, in the order chosen) and the job's placement."""
        while (running := self._next()) is not None:
            nodes = sorted({ref.node for ref in running.gpus})
            for node in nodes:
                self.on_node.setdefault(node, []).append(running)
            victims = self._enough(nodes)
            if victims is None:
                continue
            placement = self.state.what_if(self.job, victims, self.off)
            if placement is not None:
                return self._prune(victims, placement)
        return None

    def _next(self) -> RunningJob | None:
        """The next victim that may go, or None; its queue re-ranked by its new share."""
        gone = self.state.gone
        while self.heap:
            _, queue = heapq.heappop(self.heap)
            for victim in self.left[queue]:  # held only falls in a walk: a no stays a no
                running = victim.running
                if running.attempt_id not in gone and self.can_give(self.trial, running):
                    self.trial.release(running)
                    heapq.heappush(self.heap, (-self.trial.over_share(queue), queue))
                    return running
        return None

    def _enough(self, nodes: Sequence[str]) -> list[RunningJob] | None:
        """The victims to try, if the nodes just touched may now hold the job."""
        request, occupancy = self.job.request, self.state.occupancy
        if request.nodes <= 1:
            for node in nodes:
                released = [ref for r in self.on_node[node] for ref in r.gpus]
                if occupancy.usable(node, request, released, self.off_at) >= request.gpus:
                    return list(self.on_node[node])
            return None
        for node in nodes:
            released = [ref for r in self.on_node[node] for ref in r.gpus]
            idle = occupancy.idle_once(node, released)
            if idle and occupancy.usable(node, request, released, self.off_at) >= request.gpus:
                self.ready.add(node)
        if self.idle_now + len(self.ready) < request.nodes:
            return None
        victims = {r.attempt_id: r for node in sorted(self.ready) for r in self.on_node[node]}
        return list(victims.values())

    def _prune(
        self, victims: list[RunningJob], placement: Placement
    ) -> tuple[list[RunningJob], Placement]:
        """Drop victims off the placement's nodes, then any the fit does not need."""
        used = set(placement.nodes)
        kept = [r for r in victims if used.intersection(ref.node for ref in r.gpus)]
        found = self.state.what_if(self.job, kept, self.off)
        if found is None:  # the placement moved: keep what made it fit
            kept, found = victims, placement
        for running in reversed(list(kept)):
            rest = [r for r in kept if r is not running]
            fewer = self.state.what_if(self.job, rest, self.off)
            if fewer is not None:
                kept, found = rest, fewer
        return kept, found
