"""Preemption: which running attempts to stop so that owed GPUs return to their queue.

``reclaim`` (the default) works one waiting job at a time, in the order of the waits:

1. **Guarantees.** A job waiting for GPUs (INSUFFICIENT_GPUS or RESERVED, never backoff
   or quota) whose queue is owed them: after placing it the queue holds no more than
   ``min(guarantee, fair share)`` (or, for a queue of an org, the org no more than its
   own, and the queue no more than its fair share); a job asking for a GPU type with a
   type guarantee must also stay within it. Victims run on borrowed GPUs: their queue
   holds more than its guarantee and does not drop below it (nor its org, nor any of
   its type guarantees) by losing them.
2. **Reservations due.** A reservation of the backfill pass (``ctx.extra["reservations"]``)
   whose ``reserved_at <= now``, for a job of a queue below its fair share: its
   occupiers may be stopped if their queue is at or above its fair share (and keeps
   its guarantees), and is not the reserved job's own queue: that queue's order put
   its own running jobs first, stopping one to start another of the same queue is only
   churn (the pass never counts on it: its own preemptible jobs may not use the
   reservation, and the timeline does not count its own preemptible attempts as
   freeing at ``min_runtime_s``). The pass lends a due reservation to no other job, so
   the GPUs this frees are not borrowed again meanwhile.

Never a victim: a non-preemptible attempt, one younger than ``params.min_runtime_s``,
one already ``stopping``, one chosen for an earlier job of this cycle. Victims are
walked in this order: the queue most over its fair share (``held - fair_share``, again
after every pick) first, then lower priority, then least work lost (GPU-seconds since
its last checkpoint, or since it started), then attempt id. As soon as the victims
picked on some node would leave the job enough GPUs there (or enough idle nodes, for a
multi-node job), a what-if placement on a copy of the pool (``ctx.extra["pool"]``, its
placements taken; reservations of other jobs it may not use withheld) checks it fits;
the victims kept are those on the placement's nodes, less any it does not need. So the
job lands where the most preferable victims suffice. If all eligible victims would not
do, nothing is stopped for that job. GPUs of attempts already stopping count as free,
so a job whose victims are on their way out causes no new preemption.

Invariant (no preemption cycles): a queue reclaims only up to its guarantee and fair
share, and a victim's queue keeps at least its guarantee, so no victim's queue can
in turn reclaim from the queue that just got its GPUs back. A due reservation is
cleared only for a queue below its fair share, from queues at or above theirs: two
queues at their shares never clear each other's jobs in turn (each clear would give
the taker more than its share). A due reservation that is not cleared stays its
holder's (the pass lends it to no one), so its GPUs gather as their occupiers end.

Example: 8 GPUs on one node. ``prod`` (guarantee 4) waits with a 4-GPU job; ``research``
(guarantee 0) holds all 8 with four 2-GPU jobs. Shares: prod 4, research 4. The two
research jobs with the least work since their checkpoint are stopped, each "preempted
to return queue prod its guarantee of 4 GPUs for job 42".
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Hashable, Iterable, Sequence
from operator import itemgetter
from typing import Protocol, cast

from scheduler.domain.decisions import Decisions, Placement, Preemption, WaitReason
from scheduler.domain.snapshot import GpuRef, PendingJob, ResourceRequest, RunningJob
from scheduler.policy.context import Context, Place, Pool, job_kind
from scheduler.policy.fairshare import guarantee
from scheduler.policy.holdings import EPSILON, Ledger, Occupancy, may_be_owed
from scheduler.policy.pool import FreePool
from scheduler.policy.victims import (
    CanGive,
    _allocated,
    _eligible_victims,
    _Search,
    _Victim,
    work_at_risk_s,
)

RECLAIMABLE_WAITS = frozenset({WaitReason.INSUFFICIENT_GPUS, WaitReason.RESERVED})
_first = itemgetter(0)


class Reservation(Protocol):
    """What reclaim reads of a reservation in ``ctx.extra["reservations"]``."""

    @property
    def job_id(self) -> int: ...
    @property
    def gpus(self) -> Sequence[GpuRef]: ...
    @property
    def reserved_at(self) -> float: ...


def reclaim(ctx: Context, decisions: Decisions, place: Place) -> tuple[Preemption, ...]:
    """Preemptions that return guarantees and due reservations (see the module).

    Cheap when nothing is owed: if no queue could be owed even one GPU and no
    reservation is due, nothing can be stopped, and it returns at once.
    """
    return _reclaim(ctx, decisions, place, service=False)


def reclaim_las(ctx: Context, decisions: Decisions, place: Place) -> tuple[Preemption, ...]:
    """``reclaim``, then service preemption as Tiresias does with its 2D-LAS queues.

    A job that still waits for GPUs may stop attempts of jobs in a higher band of
    attained GPU-seconds (``params.las_thresholds_gpu_s``, the current attempt's service
    counted) than its own: short jobs overtake long ones, which resume from their last
    checkpoint. Within its queue any such attempt may go; across queues only while the
    victim's queue is at or above its fair share and keeps its guarantees, and the
    waiting job's queue is below its own share (so service never breaks fair share).
    The ``min_runtime_s`` rule bounds the churn; at most ``SERVICE_TRIES`` waiting jobs
    are tried a cycle. With ``params.service_loss_s`` finite, only attempts that would
    lose at most that much work (``work_at_risk_s``: since their last checkpoint, or
    their start) may go: a long run gives way just after it saved its work.

    Example, 8 GPUs, one queue, bands at 3,600 GPU-s: an 8-GPU job has run 10 minutes
    (4,800 GPU-s, band 1); a new 2-GPU job (band 0) waits: the 8-GPU job is preempted.
    """
    return _reclaim(ctx, decisions, place, service=True)


SERVICE_TRIES = 64


def _reclaim(
    ctx: Context, decisions: Decisions, place: Place, *, service: bool
) -> tuple[Preemption, ...]:
    now = ctx.snapshot.now
    reservations = list(cast("Iterable[Reservation]", ctx.extra.get("reservations") or ()))
    due = any(reservation.reserved_at <= now for reservation in reservations)
    serve = service and _service_possible(ctx)
    if not due and not serve and not any(may_be_owed(ctx, name) for name in ctx.queues):
        return ()
    pending = {job.job_id: job for job in ctx.snapshot.pending}
    run = _Run(ctx, decisions, place, reservations, pending)
    _return_guarantees(run, decisions, pending)
    if serve:
        _serve(run, decisions, pending)
    if not due:
        return tuple(run.preemptions)
    held = {reservation.job_id for reservation in reservations}  # only theirs are read
    waits = {w.job_id: w.reason for w in decisions.waits if w.job_id in held}
    for reservation in reservations:
        job = pending.get(reservation.job_id)
        due = reservation.reserved_at <= ctx.snapshot.now
        if due and job is not None and waits.get(job.job_id) in RECLAIMABLE_WAITS:
            run.free_reservation(job, reservation)
    return tuple(run.preemptions)


def _return_guarantees(run: _Run, decisions: Decisions, pending: dict[int, PendingJob]) -> None:
    """``reclaim_for`` every job waiting for GPUs, in the order of the waits, whose queue
    is owed them.

    Until GPUs move (a booking), the outcome for a job depends only on its kind: queue,
    request, preemptible, time limit (what ``owed`` and ``_forbidden`` read), unless it
    holds a reservation (``_forbidden`` leaves it its own). A job that changed nothing
    tells that the next jobs of its kind change nothing either, so they are skipped:
    thousands of waiting jobs of a few kinds cost a few searches and a lookup each.
    """
    hopeless: set[str] = set()  # queues owed not even one GPU, until the ledger changes
    inert: set[tuple[object, ...]] = set()  # kinds that changed nothing, until a booking
    holders = run.holders
    insufficient, reserved = WaitReason.INSUFFICIENT_GPUS, WaitReason.RESERVED
    for wait in decisions.waits:
        reason = wait.reason  # ``in RECLAIMABLE_WAITS``, by identity (an enum)
        if reason is not insufficient and reason is not reserved:
            continue
        job = pending.get(wait.job_id)
        if job is None or job.queue in hopeless:
            continue
        kind = job_kind(job)
        if kind in inert:
            continue
        if run.owed(job):
            booked = len(run.booked)
            run.reclaim_for(job)
            if len(run.booked) != booked:  # GPUs moved: every queue's standing may change
                hopeless.clear()
                inert.clear()
                continue
        elif not run.may_owe(job.queue):
            hopeless.add(job.queue)
            continue
        if job.job_id not in holders:
            inert.add(kind)


def band(ctx: Context, attained_gpu_s: float) -> int:
    """The 2D-LAS band of a job that attained this service (0 first)."""
    return bisect_right(ctx.params.las_thresholds_gpu_s, attained_gpu_s)


def running_service(ctx: Context, running: RunningJob) -> float:
    """GPU-seconds a running job attained, its current attempt included."""
    elapsed = max(0.0, ctx.snapshot.now - running.started_at)
    return running.attained_gpu_s + elapsed * len(running.gpus)


def _service_possible(ctx: Context) -> bool:
    """Whether some pending job is in a lower band than some preemptible running one."""
    if not ctx.snapshot.pending or not ctx.params.las_thresholds_gpu_s:
        return False
    lowest = min(band(ctx, job.attained_gpu_s) for job in ctx.snapshot.pending)
    return any(
        band(ctx, running_service(ctx, r)) > lowest
        for r in ctx.snapshot.running
        if r.preemptible and not r.stopping
    )


def _serve(run: _Run, decisions: Decisions, pending: dict[int, PendingJob]) -> None:
    """Service preemption for the waits, in their order (see ``reclaim_las``)."""
    tries = 0
    for wait in decisions.waits:
        job = pending.get(wait.job_id)
        if wait.reason not in RECLAIMABLE_WAITS or job is None or job.job_id in run.booked:
            continue
        if tries >= SERVICE_TRIES:
            return
        tries += 1
        run.serve(job)


def _future_pool(ctx: Context, decisions: Decisions) -> Pool:
    """Free GPUs after this pass's placements, plus those of attempts already stopping.

    The pass's pool (``ctx.extra["pool"]``) when it left one, else one rebuilt from the
    snapshot with the placements taken.
    """
    pool = cast("Pool | None", ctx.extra.get("pool"))
    if pool is not None:
        future = pool.copy()
    else:
        future = FreePool(ctx.snapshot.nodes)
        for placement in decisions.placements:
            future.take(placement)
    allocated = _allocated(ctx)
    for running in ctx.snapshot.running:
        if running.stopping:
            future.release(ref for ref in running.gpus if (ref.node, ref.index) in allocated)
    return future


def _failure_key(rule: Hashable, reserved: tuple[int, ...], request: ResourceRequest) -> Hashable:
    """What a search that found nothing depends on (``_Run._free_for``); the request as a
    plain tuple (equal exactly when the requests are), which hashes in C."""
    shape = (request.gpus, request.nodes, request.gpu_type, request.gpu_memory_mib)
    return (rule, reserved, shape)


class _Run:
    """One ``reclaim``: the ledger, the future pool, the victims not used yet."""

    def __init__(
        self,
        ctx: Context,
        decisions: Decisions,
        place: Place,
        reservations: list[Reservation],
        pending: dict[int, PendingJob],
    ) -> None:
        self.ctx, self.place, self.reservations, self.pending = ctx, place, reservations, pending
        self.decisions = decisions
        self.ledger = Ledger(ctx)
        # made when first asked (``future``, ``occupancy``, ``victims``, ``on_node``): a
        # cycle where every queue is served and no reservation is due never needs them
        self._future: Pool | None = None
        self._occupancy: Occupancy | None = None
        self._victims: dict[str, list[_Victim]] | None = None
        self._on_node: dict[str, list[_Victim]] | None = None
        self.preemptions: list[Preemption] = []
        self.booked: set[int] = set()  # jobs given GPUs in the future pool
        self.gone: set[int] = set()  # attempts chosen as victims: not chosen again
        # searches that found nothing, by what they depend on (see ``_free_for``); valid
        # until the next booking changes the pool, the ledger or the victims left
        self.failed: set[Hashable] = set()
        self._off: dict[tuple[int, ...], set[GpuRef]] = {}  # ``_forbidden``, by reservations
        # ``_forbidden``'s answer by what it depends on (see ``_forbidden_key``)
        self._forbidden_memo: dict[Hashable, tuple[tuple[int, ...], set[GpuRef]]] = {}
        self.holders = {reservation.job_id for reservation in reservations}
        # ``ledger.owed`` and ``ledger.may_owe`` answers, valid until the ledger changes
        # (``_commit`` clears them): thousands of waiting jobs of a few kinds ask
        self._owed: dict[Hashable, bool] = {}
        self._rank: dict[int, int] | None = None  # ``id(victim)`` -> its place in its queue

    @property
    def future(self) -> Pool:
        """The free GPUs after this pass and the bookings so far (``_future_pool``)."""
        if self._future is None:
            self._future = _future_pool(self.ctx, self.decisions)
        return self._future

    @future.setter
    def future(self, pool: Pool) -> None:
        self._future = pool

    @property
    def occupancy(self) -> Occupancy:
        """Free and held GPUs per node, the bookings so far included."""
        if self._occupancy is None:
            self._occupancy = Occupancy(self.ctx, self.decisions.placements)
        return self._occupancy

    @property
    def victims(self) -> dict[str, list[_Victim]]:
        """The eligible victims by queue, in victim order (``_eligible_victims``)."""
        if self._victims is None:
            self._victims = _eligible_victims(self.ctx)
        return self._victims

    @property
    def on_node(self) -> dict[str, list[_Victim]]:
        """The victims by the nodes they run on."""
        if self._on_node is None:
            self._on_node = {}
            for victims in self.victims.values():
                for victim in victims:
                    for node in {ref.node for ref in victim.running.gpus}:
                        self._on_node.setdefault(node, []).append(victim)
        return self._on_node

    def owed(self, job: PendingJob) -> bool:
        """``ledger.owed(job)``, once per queue, GPUs and type while the ledger holds."""
        request = job.request
        key = (job.queue, request.gpus * request.nodes, request.gpu_type)
        found = self._owed.get(key)
        if found is None:
            found = self._owed[key] = self.ledger.owed(job)
        return found

    def may_owe(self, queue: str) -> bool:
        """``ledger.may_owe(queue)``, once per queue while the ledger holds."""
        found = self._owed.get(queue)
        if found is None:
            found = self._owed[queue] = self.ledger.may_owe(queue)
        return found

    def reclaim_for(self, job: PendingJob) -> None:
        if self._known_to_fail(job, ("guarantee", job.queue)):
            return  # (the common case with a long backlog: no closure, no message)

        def can_give(ledger: Ledger, running: RunningJob) -> bool:
            return running.queue != job.queue and ledger.keeps_guarantees(running, job.queue)

        owed = guarantee(self.ctx.queue(job.queue).view)
        why = f"to return queue {job.queue} its guarantee of {owed} GPUs for job {job.job_id}"
        self._free_for(job, self.victims, can_give, why, ("guarantee", job.queue))

    def serve(self, job: PendingJob) -> None:
        """Stop attempts of jobs in higher service bands than ``job`` (``reclaim_las``)."""
        own = band(self.ctx, job.attained_gpu_s)
        under_share = self.ledger.over_share(job.queue) + job.request.total_gpus <= EPSILON
        now, max_loss = self.ctx.snapshot.now, self.ctx.params.service_loss_s

        def can_give(ledger: Ledger, running: RunningJob) -> bool:
            if band(self.ctx, running_service(self.ctx, running)) <= own:
                return False
            if work_at_risk_s(now, running) > max_loss:
                return False
            if running.queue == job.queue:
                return True
            at_share = ledger.over_share(running.queue) >= -EPSILON
            return under_share and at_share and ledger.keeps_guarantees(running, job.queue)

        why = f"for job {job.job_id}, which has had less GPU service (2D-LAS band {own})"
        self._free_for(job, self.victims, can_give, why, ("service", job.queue, own, under_share))

    def free_reservation(self, job: PendingJob, reservation: Reservation) -> None:
        if self.ledger.over_share(job.queue) >= -EPSILON:
            return  # its queue has its fair share: the occupiers end first

        def can_give(ledger: Ledger, running: RunningJob) -> bool:
            if running.queue == job.queue:  # never the reserved job's own queue
                return False
            at_share = ledger.over_share(running.queue) >= -EPSILON
            return at_share and ledger.keeps_guarantees(running, job.queue)

        why = f"to free the GPUs reserved for job {job.job_id}, due now"
        self._free_for(job, self._occupiers(reservation), can_give, why)

    def _occupiers(self, reservation: Reservation) -> dict[str, list[_Victim]]:
        """The eligible victims holding some of the reservation's GPUs, by queue, in
        victim order: found through the victims of its nodes, not among all of them."""
        reserved = {(ref.node, ref.index) for ref in reservation.gpus}
        if self._rank is None:
            self._rank = {
                id(v): i for victims in self.victims.values() for i, v in enumerate(victims)
            }
        rank, hits = self._rank, {}
        for node in {n for n, _ in reserved}:
            for v in self.on_node.get(node, ()):
                if any((r.node, r.index) in reserved for r in v.running.gpus):
                    hits[id(v)] = v
        by_queue: dict[str, list[tuple[int, _Victim]]] = {}
        for key, v in hits.items():
            by_queue.setdefault(v.running.queue, []).append((rank[key], v))
        return {
            queue: [v for _, v in sorted(by_queue[queue], key=_first)]
            for queue in self.victims
            if queue in by_queue
        }

    def _known_to_fail(self, job: PendingJob, rule: Hashable) -> bool:
        """Whether ``_free_for`` would do nothing for ``job`` under ``rule`` without a
        search: the job is booked, or a search with the same key found nothing."""
        if job.job_id in self.booked:
            return True
        return _failure_key(rule, self._forbidden(job)[0], job.request) in self.failed

    def _free_for(
        self,
        job: PendingJob,
        candidates: dict[str, list[_Victim]],
        can_give: CanGive,
        why: str,
        rule: Hashable = None,
    ) -> None:
        """Stop the fewest preferred victims that make ``job`` fit, or nothing.

        ``rule``: what ``candidates`` and ``can_give`` depend on besides the ledger (None:
        nothing to remember). A search that finds nothing depends only on the rule, the
        request, the GPUs withheld from the job and the state of the run, so until a
        booking changes that state a job with the same ones finds nothing either: a
        queue owed GPUs with thousands of waiting jobs searches once per kind of job,
        not once per job.
        """
        if job.job_id in self.booked:
            return
        reserved, off = self._forbidden(job)
        key = None if rule is None else _failure_key(rule, reserved, job.request)
        if key is not None and key in self.failed:
            return
        placement = self.what_if(job, [], off)
        if placement is not None:  # it fits once the stopping attempts are gone
            self._commit(job, [], placement, self.ledger)
            return
        found = _Search(self, job, off, candidates, can_give).run()
        if found is None:
            if key is not None:
                self.failed.add(key)
            return
        victims, placement = found
        self._commit(job, victims, placement, self.ledger.copy())
        for running in victims:
            message = f"preempted {why}"
            self.preemptions.append(Preemption(running.attempt_id, running.job_id, message))
        self.gone.update(running.attempt_id for running in victims)

    def what_if(
        self, job: PendingJob, victims: Sequence[RunningJob], off: set[GpuRef]
    ) -> Placement | None:
        """Where ``job`` would go once ``victims`` are gone, ``off`` GPUs withheld."""
        if not victims and not off:  # a placement only reads its pool: no copy needed
            return self.place(job, self.future)
        pool = self._released(victims)
        if off:
            pool.withhold(off)
        return self.place(job, pool)

    def _forbidden(self, job: PendingJob) -> tuple[tuple[int, ...], set[GpuRef]]:
        """GPUs reserved for other jobs that ``job`` may not take: those of reservations
        due now, and, as in the pass, those it would not leave in time (a preemptible job
        may use any that are not due, but its own queue's). With the positions of those
        reservations, which name the set (one set per distinct tuple: callers only read it).
        """
        now = self.ctx.snapshot.now
        ends = math.inf if job.time_limit_s is None else now + job.time_limit_s
        # all it depends on: a holder is not withheld its own reservation
        memo_key = (
            job.queue,
            job.preemptible,
            ends,
            job.job_id if job.job_id in self.holders else None,
        )
        found = self._forbidden_memo.get(memo_key)
        if found is None:
            found = self._forbidden_memo[memo_key] = self._find_forbidden(job, ends)
        return found

    def _find_forbidden(self, job: PendingJob, ends: float) -> tuple[tuple[int, ...], set[GpuRef]]:
        now = self.ctx.snapshot.now
        chosen: list[int] = []
        for i, reservation in enumerate(self.reservations):
            at = reservation.reserved_at
            if reservation.job_id == job.job_id:
                continue
            holder = self.pending.get(reservation.job_id)
            own = holder is not None and holder.queue == job.queue
            lent = job.preemptible and not own
            if at <= now or not (lent or (not math.isinf(at) and ends <= at)):
                chosen.append(i)
        key = tuple(chosen)
        forbidden = self._off.get(key)
        if forbidden is None:
            forbidden = self._off[key] = {ref for i in key for ref in self.reservations[i].gpus}
        return key, forbidden

    def _released(self, victims: Sequence[RunningJob]) -> Pool:
        pool = self.future.copy()
        for running in victims:
            pool.release(running.gpus)
        return pool

    def _commit(
        self, job: PendingJob, victims: Sequence[RunningJob], placement: Placement, ledger: Ledger
    ) -> None:
        """Book the job's what-if placement: pool, node occupancy and queue ledger."""
        pool = self._released(victims)
        pool.take(placement)
        for running in victims:
            ledger.release(running)
            self.occupancy.release(running.gpus)
        ledger.charge(job)
        self.occupancy.take(placement.gpus)
        self.future, self.ledger = pool, ledger
        self.booked.add(job.job_id)
        self.failed.clear()
        self._owed.clear()
