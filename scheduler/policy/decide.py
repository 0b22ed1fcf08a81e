"""The decision pass, and the Policy that composes ordering, placement and preemption.

Invariant: ``Policy.decide`` gives every pending job of the snapshot exactly one
Placement or one Wait (it raises if a strategy breaks this), never places a GPU twice
(each placement is claimed from a working copy of the node views), and reads no clock:
time is ``snapshot.now``.

The default pass, ``greedy``, walks the jobs in order and starts every job that fits
now. Example: node ``a`` has 8 GPUs, 6 free; jobs in order A (8 GPUs), B (4), C (4).
A does not fit, B starts on 4 GPUs, C does not fit; A and C wait, each told "the most
free on one node is 2": what the cycle leaves free.
B used GPUs that A, ahead of it, could not: greedy is work-conserving and keeps no
reservation, so a big job can starve behind a stream of small ones. Backfill with
reservations (design: "Scheduling policy") comes later as another ``BACKFILLS`` entry.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from scheduler.domain.decisions import Decisions, Placement, Preemption, Wait, WaitReason
from scheduler.domain.snapshot import NodeView, PendingJob, ResourceRequest, Snapshot
from scheduler.policy.ordering import Ordering
from scheduler.policy.placement import Place, claim, max_matching, usable_gpus

Preempt = Callable[[Snapshot, Decisions], Sequence[Preemption]]
"""A preemption strategy: which running attempts to stop, given this cycle's decisions."""

Backfill = Callable[[Snapshot, Sequence[PendingJob], Place], Decisions]
"""A decision pass: placements and waits for the ordered pending jobs (no preemptions)."""


@dataclass(frozen=True)
class Policy:
    """A scheduling policy: ``decide(snapshot) -> Decisions``, pure and deterministic.

    Build one by name with ``make_policy``; ``name`` says which pieces it is made of.
    """

    ordering: Ordering
    placement: Place
    preemption: Preempt
    backfill: Backfill
    name: str = "custom"

    def decide(self, snapshot: Snapshot) -> Decisions:
        ordered = self.ordering(snapshot)
        decisions = self.backfill(snapshot, ordered, self.placement)
        _check_every_job_decided(snapshot, decisions)
        return replace(decisions, preemptions=tuple(self.preemption(snapshot, decisions)))


def _check_every_job_decided(snapshot: Snapshot, decisions: Decisions) -> None:
    decided = Counter(p.job_id for p in decisions.placements)
    decided.update(w.job_id for w in decisions.waits)
    expected = Counter(j.job_id for j in snapshot.pending)
    if decided != expected:
        missing = sorted((expected - decided).elements())
        extra = sorted((decided - expected).elements())
        raise ValueError(f"policy bug: jobs without a decision {missing}, unexpected {extra}")


def no_preemption(snapshot: Snapshot, decisions: Decisions) -> tuple[Preemption, ...]:
    """Never stop anything."""
    return ()


def greedy(snapshot: Snapshot, ordered: Sequence[PendingJob], place: Place) -> Decisions:
    """Place each job in order if it fits now, else say why it waits (no reservations).

    Free GPUs only shrink during the pass, so a request that did not fit will not fit
    later in it either (true of any gang placement): it is tried once per cycle. Waits
    are explained after the pass, once per request shape, against what the cycle leaves
    free, which is also what a user reading the message would find.
    """
    nodes: tuple[NodeView, ...] = snapshot.nodes
    placements: list[Placement] = []
    outcomes: list[Wait | PendingJob] = []  # a wait, or a job to explain after the pass
    unplaceable: set[ResourceRequest] = set()
    for job in ordered:
        backoff = backoff_wait(job, snapshot.now)
        if backoff is not None:
            outcomes.append(backoff)
            continue
        placement = None if job.request in unplaceable else place(job, nodes)
        if placement is None:
            unplaceable.add(job.request)
            outcomes.append(job)
            continue
        nodes = claim(nodes, placement)
        placements.append(placement)
    return Decisions(placements=tuple(placements), waits=_explain(outcomes, nodes))


def _explain(outcomes: Sequence[Wait | PendingJob], nodes: Sequence[NodeView]) -> tuple[Wait, ...]:
    """The waits in order, a job's explained once per request shape against ``nodes``."""
    explained: dict[ResourceRequest, Wait] = {}
    waits: list[Wait] = []
    for outcome in outcomes:
        if isinstance(outcome, Wait):
            waits.append(outcome)
            continue
        if outcome.request not in explained:
            explained[outcome.request] = explain_wait(outcome, nodes)
        waits.append(replace(explained[outcome.request], job_id=outcome.job_id))
    return tuple(waits)


def backoff_wait(job: PendingJob, now: float) -> Wait | None:
    """A BACKOFF wait while ``now`` is before the job's ``not_before``, else None."""
    if job.not_before is None or job.not_before <= now:
        return None
    seconds = math.ceil(job.not_before - now)
    message = f"waits out its retry backoff; eligible again in {seconds} s"
    return Wait(job_id=job.job_id, reason=WaitReason.BACKOFF, message=message)


def explain_wait(job: PendingJob, nodes: Sequence[NodeView]) -> Wait:
    """The most precise reason why ``job`` does not fit on ``nodes`` now, in one sentence.

    NO_NODES: no node is up (for a job without GPUs: fewer than it asks for).
    GPU_TYPE_UNAVAILABLE: the up nodes could not hold it even
    if they were empty (type, memory, GPU count or health). Else INSUFFICIENT_GPUS.
    """
    request = job.request
    needs = f"needs {describe_request(request)}"
    up = [n for n in nodes if n.schedulable]
    if not up:
        return Wait(job.job_id, WaitReason.NO_NODES, f"{needs}; {_no_node_up(nodes)}")
    if request.gpus == 0:  # any up node holds it: it only waits when too few are up
        detail = f"only {_count(len(up), 'node')} {'is' if len(up) == 1 else 'are'} up"
        return Wait(job.job_id, WaitReason.NO_NODES, f"{needs}; {detail}")
    if request.nodes > 1:
        reason, detail = _why_not_multi_node(request, up)
    else:
        reason, detail = _why_not_one_node(request, up)
    return Wait(job.job_id, reason, f"{needs}; {detail}")


def _why_not_one_node(request: ResourceRequest, up: Sequence[NodeView]) -> tuple[WaitReason, str]:
    capacity = max(max_matching(request, n, healthy_only=True) for n in up)
    if capacity < request.gpus:
        detail = (
            f"no up node has {request.gpus} {_kind(request)} (the most on one node is {capacity})"
        )
        return WaitReason.GPU_TYPE_UNAVAILABLE, detail
    most_free = max(len(usable_gpus(request, n)) for n in up)
    return WaitReason.INSUFFICIENT_GPUS, f"the most free on one node is {most_free}"


def _why_not_multi_node(request: ResourceRequest, up: Sequence[NodeView]) -> tuple[WaitReason, str]:
    holders = [n for n in up if max_matching(request, n, healthy_only=True) >= request.gpus]
    if len(holders) < request.nodes:
        has = "has" if len(holders) == 1 else "have"
        detail = f"only {_count(len(holders), 'up node')} {has} {request.gpus} {_kind(request)}"
        return WaitReason.GPU_TYPE_UNAVAILABLE, detail
    idle = sum(1 for n in holders if n.is_idle and len(usable_gpus(request, n)) >= request.gpus)
    verb = "is" if idle == 1 else "are"
    detail = (
        f"it takes whole idle nodes and {idle} of the {len(holders)} up nodes "
        f"that could hold it {verb} idle"
    )
    return WaitReason.INSUFFICIENT_GPUS, detail


def describe_request(request: ResourceRequest) -> str:
    """``ResourceRequest(4, 2, "A100-80GB", 40960)`` ->
    "4 GPUs of type A100-80GB with at least 40 GiB each on each of 2 nodes"."""
    what = _count(request.gpus, "GPU") if request.gpus else "no GPU"
    if request.gpus and request.gpu_type is not None:
        what += f" of type {request.gpu_type}"
    if request.gpus and request.gpu_memory_mib is not None:
        what += f" with at least {_size(request.gpu_memory_mib)} each"
    where = "1 node" if request.nodes == 1 else f"each of {request.nodes} nodes"
    return f"{what} on {where}"


def _kind(request: ResourceRequest) -> str:
    constrained = request.gpu_type is not None or request.gpu_memory_mib is not None
    return "matching healthy GPUs" if constrained else "healthy GPUs"


def _no_node_up(nodes: Sequence[NodeView]) -> str:
    if not nodes:
        return "no node has registered"
    states = Counter(n.state.value for n in nodes)
    return "no node is up (" + ", ".join(f"{c} {s}" for s, c in sorted(states.items())) + ")"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _size(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"
