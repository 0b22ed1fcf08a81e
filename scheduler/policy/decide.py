"""The Policy that composes the pieces, and the plain ``greedy`` decision pass.

Invariant: ``Policy.decide`` gives every pending job of the snapshot exactly one
Placement or one Wait (it raises if a piece breaks this), never places a GPU twice
(every placement is taken from the pass's ``FreePool``, which refuses a GPU that is not
free), and reads no clock: time is ``snapshot.now``. The steps:
``ctx = make_context(snapshot, params)``; ``ordered = ordering(ctx)``;
``decisions = pass_(ctx, ordered, place, admit)``; check; ``preempt(ctx, decisions, place)``.

``greedy`` walks the jobs in order and starts every admitted job that fits now. Example:
node ``a`` has 8 GPUs, 6 free; jobs in order A (8 GPUs), B (4), C (4). A does not fit,
B starts on 4 GPUs, C does not fit; A and C wait, each told "the most free on one node
is 2": what the cycle leaves free. B used GPUs that A, ahead of it, could not: greedy
keeps no reservation, so a big job can starve behind a stream of small ones; the
``backfill`` pass (``backfill.py``) protects it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from scheduler.domain.decisions import Decisions, Placement, Preemption, Wait
from scheduler.domain.snapshot import PendingJob, Snapshot
from scheduler.policy.context import (
    Admission,
    Context,
    Ordering,
    Pass,
    Place,
    PolicyParams,
    Preempt,
    judges_by_kind,
    make_context,
)
from scheduler.policy.explain import (
    Shape,
    WaitList,
    backoff_wait,
    explain_wait,
    gc_paused,
    shape_of,
)
from scheduler.policy.pool import FreePool


@judges_by_kind
def admit_all(ctx: Context, job: PendingJob) -> Wait | None:
    """No quota rule: every job may start if it fits."""
    return None


def no_preemption(ctx: Context, decisions: Decisions, place: Place) -> tuple[Preemption, ...]:
    """Never stop anything."""
    return ()


@dataclass(frozen=True)
class Policy:
    """A scheduling policy: ``decide(snapshot) -> Decisions``, pure and deterministic.

    Build one by name with ``make_policy``; ``name`` says which pieces it is made of.
    """

    ordering: Ordering
    placement: Place
    preemption: Preempt
    backfill: Pass
    admission: Admission = admit_all
    params: PolicyParams = field(default_factory=PolicyParams)
    name: str = "custom"

    def decide(self, snapshot: Snapshot) -> Decisions:
        # a cycle makes ~100,000 short-lived acyclic objects: collections of the cyclic
        # garbage collector meanwhile would walk them all, and find nothing to free
        with gc_paused():
            return self._decide(snapshot)

    def _decide(self, snapshot: Snapshot) -> Decisions:
        ctx = make_context(snapshot, self.params)
        ordered = self.ordering(ctx)
        decisions = self.backfill(ctx, ordered, self.placement, self.admission)
        _check_every_job_decided(snapshot, decisions)
        preemptions = self.preemption(ctx, decisions, self.placement)
        return replace(decisions, preemptions=tuple(preemptions))


def _check_every_job_decided(snapshot: Snapshot, decisions: Decisions) -> None:
    decided = [p.job_id for p in decisions.placements] + [w.job_id for w in decisions.waits]
    expected = [j.job_id for j in snapshot.pending]
    unique = set(decided)
    if len(decided) == len(expected) == len(unique) and unique == set(expected):
        return
    counted, wanted = Counter(decided), Counter(expected)
    missing = sorted((wanted - counted).elements())
    extra = sorted((counted - wanted).elements())
    raise ValueError(f"policy bug: jobs without a decision {missing}, unexpected {extra}")


def greedy(
    ctx: Context, ordered: Sequence[PendingJob], place: Place, admit: Admission
) -> Decisions:
    """Place each admitted job in order if it fits now, else say why it waits.

    Free GPUs only shrink during the pass, so a request that did not fit will not fit
    later in it either (true of any gang placement): it is tried once per cycle. Waits
    are explained after the pass, once per request shape, against what the cycle leaves
    free, which is also what a user reading the message would find.
    """
    pool = FreePool(ctx.snapshot.nodes)
    ctx.extra["pool"] = pool
    placements: list[Placement] = []
    waits = WaitList()
    failed: dict[Shape, int] = {}  # shapes that did not fit -> their wait key (a small int)
    now, add = ctx.snapshot.now, waits.add
    for job in ordered:  # the hot loop: 50,000 jobs in a few tens of milliseconds
        if job.not_before is not None and job.not_before > now:
            add(job, backoff_wait(job, now))
            continue
        wait = admit(ctx, job)
        if wait is not None:
            add(job, wait)
            continue
        shape = shape_of(job.request)
        key = failed.get(shape)
        placement = None if key is not None else place(job, pool)
        if placement is None:
            if key is None:
                key = failed[shape] = len(failed)
            add(job, None, key)
            continue
        pool.take(placement)
        ctx.charge(job)
        placements.append(placement)
    return Decisions(
        placements=tuple(placements), waits=waits.finish(lambda job: explain_wait(job, pool))
    )
