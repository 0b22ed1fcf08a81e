"""Who holds which GPUs while ``preemption.reclaim`` moves them: by queue and by node.

Both start from the context after the decision pass and change only through their
methods, on reclaim's private copies: the context and the pass's pool stay untouched.

- ``Ledger``: GPUs held per queue, per org and per (queue, GPU type); answers "is this
  queue owed these GPUs?" and "may this attempt's queue lose it?".
- ``Occupancy``: per up node, the free and the held GPU indices. It tells reclaim when
  a what-if placement is worth trying (a node now has enough GPUs, or enough nodes are
  idle); the pool and the placement piece have the last word.

Example: ``prod`` (guarantee 4, fair share 4) holds 2: a 2-GPU job is owed (4 <= 4), a
4-GPU job is not. ``research`` (guarantee 2) holds 6: it may lose a 2-GPU attempt or a
4-GPU one, not both (6 - 2 - 4 < 2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import (
    GpuRef,
    GpuView,
    NodeView,
    PendingJob,
    ResourceRequest,
    RunningJob,
)
from scheduler.policy.context import Context, gpu_types_of
from scheduler.policy.fairshare import guarantee, type_quota
from scheduler.policy.placement import gpu_matches

EPSILON = 1e-6  # fair shares are fractional: compare with a little slack


class Ledger:
    """GPUs held per queue, org and (queue, casefolded GPU type)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.held = {name: float(state.held) for name, state in ctx.queues.items()}
        self.by_type = {
            (name, gpu_type): held
            for name, state in ctx.queues.items()
            for gpu_type, held in state.held_by_type.items()
        }
        self.types_of: dict[int, Counter[str]] = {}  # by attempt id; shared by copies
        # what a victim walk asks again and again, fixed for the cycle; shared by copies
        self.orgs: dict[str, str | None] = {}
        self.guarantees: dict[str, int] = {}

    def copy(self) -> Ledger:
        clone = object.__new__(Ledger)
        clone.ctx, clone.types_of = self.ctx, self.types_of
        clone.orgs, clone.guarantees = self.orgs, self.guarantees
        clone.held, clone.by_type = dict(self.held), dict(self.by_type)
        return clone

    def org(self, queue: str) -> str | None:
        """The queue's org, if the snapshot lists it."""
        if queue in self.orgs:
            return self.orgs[queue]
        parent = self.ctx.queue(queue).view.parent
        org = parent if parent is not None and parent in self.ctx.queues else None
        self.orgs[queue] = org
        return org

    def guarantee(self, queue: str) -> int:
        """The queue's total guarantee (``fairshare.guarantee``)."""
        found = self.guarantees.get(queue)
        if found is None:
            found = self.guarantees[queue] = guarantee(self.ctx.queue(queue).view)
        return found

    def over_share(self, queue: str) -> float:
        return self.held.get(queue, 0.0) - self.ctx.queue(queue).fair_share

    def owed(self, job: PendingJob) -> bool:
        """Whether ``job``'s queue stays within what it may reclaim once the job runs:
        ``min(guarantee, fair share)`` of the queue, or of its org (the queue staying
        within its fair share), and the guarantee of the type the job asks for."""
        gpus, state = job.request.total_gpus, self.ctx.queue(job.queue)
        if gpus <= 0:
            return False
        after = self.held.get(job.queue, 0.0) + gpus
        owed = after <= min(guarantee(state.view), state.fair_share) + EPSILON
        org = self.org(job.queue)
        if not owed and org is not None:
            org_state = self.ctx.queues[org]
            org_after = self.held.get(org, 0.0) + gpus
            org_bound = min(guarantee(org_state.view), org_state.fair_share)
            owed = org_after <= org_bound + EPSILON and after <= state.fair_share + EPSILON
        quota = type_quota(state.view, job.request.gpu_type)
        if owed and quota is not None:
            held = self.by_type.get((job.queue, quota.gpu_type.casefold()), 0)
            owed = held + gpus <= quota.guaranteed_gpus
        return owed

    def may_owe(self, queue: str) -> bool:
        """Whether a 1-GPU job of ``queue`` asking for no type would be ``owed``: if not,
        no job of the queue is (``owed`` only gets harder with more GPUs or a type)."""
        return _may_owe(self.ctx, queue, self.held)

    def keeps_guarantees(self, running: RunningJob, taker: str) -> bool:
        """Whether losing ``running`` leaves its queue, org and types their guarantees.

        The org is not checked when ``taker`` (the queue getting the GPUs) is in it.
        """
        queue, gpus = running.queue, len(running.gpus)
        if self.held.get(queue, 0.0) - gpus < self.guarantee(queue):
            return False
        org = self.org(queue)
        if (
            org is not None
            and org != self.org(taker)
            and self.held.get(org, 0.0) - gpus < self.guarantee(org)
        ):
            return False
        view = self.ctx.queue(queue).view
        if not view.type_quotas:  # no type guarantee to keep (``type_quota`` is None)
            return True
        for gpu_type, count in self._types(running).items():
            quota = type_quota(view, gpu_type)
            held = self.by_type.get((queue, gpu_type), 0)
            if quota is not None and held - count < quota.guaranteed_gpus:
                return False
        return True

    def release(self, running: RunningJob) -> None:
        self._add(running.queue, -1, len(running.gpus), self._types(running))

    def charge(self, job: PendingJob) -> None:
        gpus, gpu_type = job.request.total_gpus, job.request.gpu_type
        self._add(job.queue, 1, gpus, Counter({gpu_type.casefold(): gpus} if gpu_type else {}))

    def _add(self, queue: str, sign: int, gpus: int, types: Counter[str]) -> None:
        org = self.org(queue)
        for name in (queue,) if org is None else (queue, org):
            self.held[name] = self.held.get(name, 0.0) + sign * gpus
            for gpu_type, count in types.items():
                key = (name, gpu_type)
                self.by_type[key] = self.by_type.get(key, 0) + sign * count

    def _types(self, running: RunningJob) -> Counter[str]:
        types = self.types_of.get(running.attempt_id)
        if types is None:
            gpu_types = self.ctx.gpu_types
            if gpu_types is None:
                gpu_types = self.ctx.gpu_types = gpu_types_of(self.ctx.snapshot.nodes)
            found = gpu_types.get
            types = Counter(
                t.casefold()
                for ref in running.gpus
                if (t := found((ref.node, ref.index))) is not None
            )
            self.types_of[running.attempt_id] = types
        return types


class Occupancy:
    """Per up node: free and held GPU indices (see the module docstring)."""

    def __init__(self, ctx: Context, placements: Iterable[Placement]) -> None:
        self.views: dict[str, NodeView] = {}
        self.free: dict[str, set[int]] = {}
        self.held: dict[str, set[int]] = {}
        for node in ctx.snapshot.nodes:
            if not node.schedulable:
                continue
            free, held = set(), set()
            for gpu in node.gpus:  # one walk of the GPUs: a cycle builds this every time
                if gpu.allocated_to is not None:
                    held.add(gpu.index)
                elif gpu.healthy:
                    free.add(gpu.index)
            self.views[node.name], self.free[node.name], self.held[node.name] = node, free, held
        self._gpus: dict[str, dict[int, GpuView]] = {}  # by node, then index: when needed
        self._matches: dict[tuple[str, str | None, int | None], frozenset[int]] = {}
        for running in ctx.snapshot.running:
            if running.stopping:
                self.release(running.gpus)
        for placement in placements:
            self.take(placement.gpus)

    def take(self, gpus: Iterable[GpuRef]) -> None:
        for ref in gpus:
            if ref.node in self.views:
                self.free[ref.node].discard(ref.index)
                self.held[ref.node].add(ref.index)

    def release(self, gpus: Iterable[GpuRef]) -> None:
        for ref in gpus:
            gpu = self._gpu(ref.node, ref.index)
            if gpu is not None and ref.index in self.held[ref.node]:
                self.held[ref.node].discard(ref.index)
                if gpu.healthy:
                    self.free[ref.node].add(ref.index)

    def _gpu(self, node: str, index: int) -> GpuView | None:
        """The up node's GPU ``index``, None if the snapshot does not show it."""
        gpus = self._gpus.get(node)
        if gpus is None:
            view = self.views.get(node)
            if view is None:
                return None
            gpus = self._gpus[node] = {g.index: g for g in view.gpus}
        return gpus.get(index)

    def usable(
        self,
        node: str,
        request: ResourceRequest,
        released: Iterable[GpuRef],
        off: Mapping[str, AbstractSet[int]],
    ) -> int:
        """How many GPUs of ``node`` matching ``request`` are free once ``released`` are,
        leaving out those in ``off`` (reserved for others: indices by node, see
        ``by_node``)."""
        if node not in self.views:
            return 0
        matching = self._matching(node, request)
        indices = (self.free[node] | {ref.index for ref in released if ref.node == node}) & matching
        withheld = off.get(node)
        return len(indices - withheld) if withheld else len(indices)

    def idle_once(self, node: str, released: Iterable[GpuRef]) -> bool:
        """Whether ``node`` has no held GPU once ``released`` are free."""
        held = self.held.get(node)
        return held is not None and held <= {ref.index for ref in released if ref.node == node}

    def _matching(self, node: str, request: ResourceRequest) -> frozenset[int]:
        """The node's healthy GPUs that match the request (cached per request shape)."""
        key = (node, request.gpu_type, request.gpu_memory_mib)
        found = self._matches.get(key)
        if found is None:
            gpus = self.views[node].gpus
            found = frozenset(g.index for g in gpus if g.healthy and gpu_matches(request, g))
            self._matches[key] = found
        return found


def by_node(gpus: Iterable[GpuRef]) -> dict[str, set[int]]:
    """GPU indices by node: what ``Occupancy.usable`` takes as GPUs to leave out."""
    found: dict[str, set[int]] = {}
    for ref in gpus:
        found.setdefault(ref.node, set()).add(ref.index)
    return found


def may_be_owed(ctx: Context, queue: str) -> bool:
    """``Ledger.may_owe`` before any GPU moves: from what the context says is held."""
    return _may_owe(ctx, queue, None)


def _may_owe(ctx: Context, queue: str, held: dict[str, float] | None) -> bool:
    state = ctx.queue(queue)

    def holds(name: str) -> float:
        return float(ctx.queues[name].held) if held is None else held.get(name, 0.0)

    after = holds(queue) + 1
    if after <= min(guarantee(state.view), state.fair_share) + EPSILON:
        return True
    parent = state.view.parent
    if parent is None or parent not in ctx.queues or after > state.fair_share + EPSILON:
        return False
    org = ctx.queues[parent]
    return holds(parent) + 1 <= min(guarantee(org.view), org.fair_share) + EPSILON
