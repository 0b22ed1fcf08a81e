"""The ``backfill`` pass: EASY backfill with one reservation per queue.

Walking the jobs in order, an admitted job that fits now starts. The first admitted job
of a queue that does not fit gets a **reservation**: the GPUs that free up first for it
(``timeline.Timeline``), a concrete set on concrete nodes, and the time ``reserved_at``
when they are all free (``inf`` when that waits on attempts without a time limit).
A later job may use a reserved GPU only if it ends (``now + time_limit_s``) by that
reservation's ``reserved_at`` (never for an ``inf`` one), or is preemptible and of
another queue: the reserved job's own queue already put it first, so a job of that
queue never takes its GPUs on the strength of being preemptible (the preemption piece
would have to stop its own queue's job for its own queue: churn). A **due** reservation
(``reserved_at <= now``: its GPUs are free or held by attempts the preemption piece may
stop now) is its holder's alone: a job placed there now would be in the way at once,
a preemptible one stopped again as soon as it may be (churn that costs its work since
its last checkpoint). Free GPUs that no reservation holds are everyone's.

Invariants: at most one reservation per queue, so every queue's head is protected and no
queue's stream of small jobs starves a large job of another; reservations are disjoint;
no placement delays a reservation: it avoids the reserved GPUs or leaves them by
``reserved_at`` (or is preemptible and of another queue, the reservation is not due, and
``ctx.extra["reservations"]`` lets the preemption piece stop it once it is). Every job
gets one decision: the holder of a reservation waits with INSUFFICIENT_GPUS ("it holds a
reservation on n7 starting in 12 min", ``estimated_start`` set), a job that would fit
only on reserved GPUs with RESERVED ("the free GPUs are reserved for job 17 (8 GPUs)
starting in 12 min"), others as in ``greedy``.

Example (now = 0): node ``a`` 8 GPUs, 4 free, the other 4 held until 600. Jobs in order,
B and C not preemptible: A (8 GPUs), B (2 GPUs, time limit 300), C (2 GPUs, limit 3600).
A does not fit: it reserves ``a:0-7`` from 600. B ends by 300 <= 600: it starts on
``a:0-1``. C would end after 600 on A's GPUs: RESERVED, "reserved for job A (8 GPUs)
starting in 10 min". A preemptible C of another queue than A's would start (and be
preempted if need be); a preemptible C of A's queue waits, RESERVED, as it does. Had the
other 4 GPUs been held by another queue's preemptible attempt past ``min_runtime_s``, A's
reservation would be due now, and a preemptible C would wait, RESERVED ("starting now"),
whatever its queue.

How: one ``FreePool`` of what is free (level 0) and, made on demand, pools that also
withhold the GPUs of the first ``k`` reservations in time order (level k): the due ones
first, then by ``allows_until``. A job's level is the number of reservations it may
not use (the due ones if preemptible), so every job asks one pool, in O(GPUs per node)
per query. A preemptible job that may not use its own queue's reservation asks that
queue's pool instead: what is free, less the due reservations' GPUs and that one's
(made on demand too).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from scheduler.domain.decisions import Decisions, Placement, Wait, WaitReason
from scheduler.domain.snapshot import GpuRef, PendingJob
from scheduler.policy.context import Admission, Context, Place, by_kind, job_kind
from scheduler.policy.explain import (
    Shape,
    WaitList,
    backoff_wait,
    count,
    describe_request,
    explain_wait,
    gc_paused,
    shape_of,
    starting,
)
from scheduler.policy.pool import FreePool
from scheduler.policy.timeline import Timeline


@dataclass(frozen=True, slots=True)
class Reservation:
    """GPUs kept for a waiting job (``ctx.extra["reservations"]``, in pass order).

    ``reserved_at``: epoch seconds when all ``gpus`` are free by the running attempts'
    time limits (or by when their preemptible holders of other queues may be preempted),
    ``inf`` when some wait on attempts without a time limit. ``occupiers``: attempt ids
    of the preemptible attempts of other queues now holding some of ``gpus``, those the
    preemption piece may stop once the reservation is due (``reserved_at <= now``). A
    multi-node job reserves whole nodes.
    """

    job_id: int
    queue: str
    gpus: tuple[GpuRef, ...]
    reserved_at: float
    occupiers: tuple[int, ...] = ()

    @property
    def allows_until(self) -> float:
        """A non-preemptible job may use these GPUs if it ends by this (-inf: never)."""
        return -math.inf if math.isinf(self.reserved_at) else self.reserved_at


def backfill(
    ctx: Context, ordered: Sequence[PendingJob], place: Place, admit: Admission
) -> Decisions:
    """EASY backfill with one reservation per queue (see the module docstring)."""
    run = _Backfill(ctx, place)
    with gc_paused():
        waits = run.walk(ordered, admit)
    ctx.extra["pool"] = run.free
    ctx.extra["reservations"] = list(run.reservations)
    return Decisions(placements=tuple(run.placements), waits=waits.finish(run.explain))


@dataclass(slots=True)
class _Level:
    pool: FreePool  # what is free, less the GPUs of the first k reservations by time
    synced: int  # how many of the pass's placements it has taken so far


class _Backfill:
    """The state of one backfill pass: pools by level, reservations, the timeline."""

    def __init__(self, ctx: Context, place: Place) -> None:
        self.ctx, self.place, self.now = ctx, place, ctx.snapshot.now
        self.free = FreePool(ctx.snapshot.nodes)  # level 0: what is free
        self._levels: dict[int, _Level] = {}  # level k > 0, made when a job first needs it
        self.placements: list[Placement] = []
        self._placed: list[PendingJob] = []  # the job of each placement, in step
        self.reservations: list[Reservation] = []  # in pass order
        self._by_time: list[Reservation] = []  # due first, then by allows_until (``_insert``)
        self._until: list[float] = []  # their keys, for bisect: -inf for the due ones
        self._due = 0  # how many are due (reserved_at <= now): the first ones by time
        self._held: dict[int, tuple[PendingJob, Reservation]] = {}  # by the holder's job id
        self._queues: dict[str, Reservation] = {}  # queues that hold one: theirs
        self._own: dict[str, _Level] = {}  # by queue: free less the queue's reservation
        self._own_failed: dict[str, set[Shape]] = {}  # by queue: shapes that did not fit
        self._failed: list[set[Shape]] = [set()]  # by level: shapes that did not fit
        self._unreservable: set[Shape] = set()  # shapes the timeline cannot place
        self._timeline: Timeline | None = None
        self._plain: dict[Shape, Wait] = {}  # explanations against what is left free
        self._blockers: dict[tuple[Shape, int], Reservation | None] = {}
        self._own_blockers: dict[tuple[Shape, str], Reservation | None] = {}
        self._keys: dict[Hashable, int] = {}  # wait keys (see ``_key``)
        self._changes = 0  # failures recorded (``failed`` and ``_unreservable`` sets)

    def walk(self, ordered: Sequence[PendingJob], admit: Admission) -> WaitList:
        """The pass: every job in order starts, reserves, or waits (see the module).

        An admitted job's outcome follows from its kind (queue, request, preemptible,
        time limit) and the pass's state, which changes only when a job starts, reserves,
        or records a failure or a new wait key (``_state``). So once a job of a kind waited
        without changing it, the next jobs of that kind wait with the same key, until the
        state changes: a backlog of thousands of jobs of a few dozen kinds is judged a few
        dozen times (``outcome``), each other job is one lookup.
        """
        ctx, now, waits = self.ctx, self.now, WaitList()
        add = waits.add
        add_job, add_wait, add_key = waits.appenders()  # ``add(job, None, key)``, inline
        known: dict[tuple[object, ...], int] = {}  # kind -> its wait key, in this state
        admitted = by_kind(admit)  # a kind in ``known`` is admitted too (no charge since)
        for job in ordered:  # the hot loop: 50,000 jobs
            if job.not_before is not None and job.not_before > now:
                add(job, backoff_wait(job, now))
                continue
            kind = job_kind(job)
            key = known.get(kind) if admitted else None
            if key is None:
                wait = admit(ctx, job)
                if wait is not None:
                    add(job, wait)
                    continue
                key = known.get(kind)
            if key is not None:  # the common case: it waits as the last one of its kind
                add_job(job)
                add_wait(None)
                add_key(key)
                continue
            state = self._state()
            key = self.outcome(job)
            if key is None:
                ctx.charge(job)
                known.clear()
                continue
            add(job, None, key)
            if self._state() == state:
                known[kind] = key
            else:
                known.clear()
        return waits

    def _state(self) -> tuple[int, int, int, int]:
        """What changes whenever the pass's state does (see ``walk``): placements,
        reservations, wait keys and recorded failures, by count."""
        return len(self.placements), len(self.reservations), len(self._keys), self._changes

    def outcome(self, job: PendingJob) -> int | None:
        """Start, reserve for, or key the wait of an admitted job: None when it starts,
        else its wait key (``start``), with the shortcuts of the two common waits."""
        request = job.request  # ``shape_of``, inline
        shape = (request.gpus, request.nodes, request.gpu_type, request.gpu_memory_mib)
        queues, keys = self._queues, self._keys
        if job.preemptible and job.queue in queues:
            if shape in self._failed[self._due]:
                key = keys.get(shape)  # it waits as others did
                if key is not None:
                    return key
            # what ``start`` does for a job that may not use its queue's reservation and
            # whose shape failed beside it
            reservation = queues[job.queue]
            limit, at = job.time_limit_s, reservation.reserved_at
            ends = math.inf if limit is None else self.now + limit
            if (
                reservation.job_id != job.job_id
                and ends > (-math.inf if math.isinf(at) else at)  # ``allows_until``, inline
                and shape in self._own_failed[job.queue]
            ):
                key = keys.get(("own", shape, job.queue))
                if key is not None:
                    return key
        return self.start(job, shape)

    def start(self, job: PendingJob, shape: Shape) -> int | None:
        """Place an admitted job, or reserve for it. None when it starts now, else the key
        of its wait: jobs of one key share an explanation (``explain``)."""
        own = self._own_reservation(job) if job.queue in self._queues else None
        level = self._due if job.preemptible else self.level(job)
        failed = self._failed[level] if own is None else self._own_failed[job.queue]
        if shape not in failed:
            pool = self._pool(level) if own is None else self._own_pool(own)
            placement = self.place(job, pool)
            if placement is not None:
                self._take(placement, job)
                return None
            failed.add(shape)
            self._changes += 1
        fresh = job.queue not in self._queues and shape not in self._unreservable
        if fresh and self._reserve(job, shape):
            return self._key(("holds", job.job_id))
        # the reservations it may not use are only known after the pass: key by its end
        key: Hashable = shape if job.preemptible else (shape, job.time_limit_s)
        if own is not None:
            key = ("own", shape, job.queue)
        found = self._keys.get(key)  # the common case, without a call
        return self._key(key) if found is None else found

    def _own_reservation(self, job: PendingJob) -> Reservation | None:
        """Its queue's reservation if ``job`` is preemptible and may not use it (it does
        not end by then); a job that is not preemptible finds it among its levels."""
        if not job.preemptible:
            return None
        reservation = self._queues.get(job.queue)
        if reservation is None or reservation.job_id == job.job_id:
            return None
        limit = job.time_limit_s
        ends = math.inf if limit is None else self.now + limit
        return reservation if ends > reservation.allows_until else None

    def _key(self, key: Hashable) -> int:
        """A small int per distinct key: 50,000 waits keep ints, not tuples, until the end
        of the pass (fewer objects for the garbage collector to follow)."""
        found = self._keys.get(key)
        if found is None:
            found = self._keys[key] = len(self._keys)
        return found

    def level(self, job: PendingJob) -> int:
        """How many reservations (the first ones by time) ``job`` may not use: the due
        ones if it is preemptible, else also those it would not leave in time."""
        if job.preemptible or not self._until:
            return self._due
        limit = job.time_limit_s
        ends = math.inf if limit is None else self.now + limit
        return bisect_left(self._until, ends)

    def _pool(self, level: int) -> FreePool:
        """The pool of a level, brought up to date with the placements made since."""
        if not level:
            return self.free
        found = self._levels.get(level)
        if found is None:
            pool = self.free.copy()
            for reservation in self._by_time[:level]:
                pool.withhold(reservation.gpus)
            found = self._levels[level] = _Level(pool, len(self.placements))
        return self._synced(found)

    def _own_pool(self, reservation: Reservation) -> FreePool:
        """What is free less the GPUs of the due reservations and of this (a queue's own)
        one, up to date."""
        found = self._own.get(reservation.queue)
        if found is None:
            pool = self._pool(self._due).copy()
            pool.withhold(reservation.gpus)
            found = self._own[reservation.queue] = _Level(pool, len(self.placements))
        return self._synced(found)

    def _synced(self, found: _Level) -> FreePool:
        """The level's pool, with the placements made since it last caught up."""
        if found.synced < len(self.placements):
            late = self.placements[found.synced :]
            found.pool.withhold(ref for placement in late for ref in placement.gpus)
            found.synced = len(self.placements)
        return found.pool

    def _take(self, placement: Placement, job: PendingJob) -> None:
        self.free.take(placement)  # the other levels catch up when next asked (``_pool``)
        if self._timeline is not None:
            self._timeline.hold(placement, job)
        self.placements.append(placement)
        self._placed.append(job)

    def _reserve(self, job: PendingJob, shape: Shape) -> bool:
        timeline = self._get_timeline()
        slot = timeline.earliest(job.request, job.queue)
        if slot is None:
            self._unreservable.add(shape)
            self._changes += 1
            return False
        occupiers = timeline.occupiers(slot.gpus, job.queue)
        reservation = Reservation(job.job_id, job.queue, slot.gpus, slot.at, occupiers)
        timeline.block(slot.gpus)
        self.reservations.append(reservation)
        self._queues[job.queue] = reservation
        self._own_failed[job.queue] = set()
        self._held[job.job_id] = (job, reservation)
        self._insert(reservation)
        return True

    def _insert(self, reservation: Reservation) -> None:
        """Add a reservation to the levels: pools and failures past it move up one.

        A due one goes after the due ones (key -inf: no job ends by it), an ``inf`` one
        after every ``-inf`` key, others by ``allows_until``: the due ones stay first, so
        withholding them from every job but their holder is a level like any other."""
        if reservation.reserved_at <= self.now:
            at, key = self._due, -math.inf
            self._due += 1
            for own in self._own.values():  # the queues' own pools withhold it too
                own.pool.withhold(reservation.gpus)
        else:
            key = reservation.allows_until
            at = bisect_right(self._until, key)
        self._until.insert(at, key)
        self._by_time.insert(at, reservation)
        for level, found in self._levels.items():
            if level > at:
                found.pool.withhold(reservation.gpus)
        self._levels = {lv + 1 if lv > at else lv: found for lv, found in self._levels.items()}
        self._failed.insert(at + 1, set())

    def _get_timeline(self) -> Timeline:
        if self._timeline is None:
            self._timeline = Timeline(self.ctx.snapshot, self.ctx.params)
            for placement, job in zip(self.placements, self._placed, strict=True):
                self._timeline.hold(placement, job)
        return self._timeline

    # -- explanations, after the pass ----------------------------------------------

    def explain(self, job: PendingJob) -> Wait:
        """Why a job that did not start waits (called once per ``start`` key)."""
        held = self._held.get(job.job_id)
        if held is not None:
            return self._holder_wait(job, held[1])
        shape, level = shape_of(job.request), self.level(job)
        own = self._own_reservation(job)
        blocker = None if own is None else self._own_blocker(job, shape, own)
        if blocker is None and level:
            blocker = self._blocker(job, shape, level)
        if blocker is not None:
            holder, reservation = self._held[blocker.job_id]
            message = (
                f"needs {describe_request(job.request)}; the free GPUs are reserved for job "
                f"{holder.job_id} ({count(holder.request.total_gpus, 'GPU')}) "
                f"{starting(reservation.reserved_at, self.now)}"
            )
            return Wait(job.job_id, WaitReason.RESERVED, message)
        found = self._plain.get(shape)
        if found is None:
            found = self._plain[shape] = explain_wait(job, self.free)
        return found

    def _holder_wait(self, job: PendingJob, reservation: Reservation) -> Wait:
        where = ", ".join(sorted({ref.node for ref in reservation.gpus}))
        message = (
            f"needs {describe_request(job.request)}; it holds a reservation on {where} "
            f"{starting(reservation.reserved_at, self.now)}"
        )
        at = None if math.isinf(reservation.reserved_at) else reservation.reserved_at
        return Wait(job.job_id, WaitReason.INSUFFICIENT_GPUS, message, estimated_start=at)

    def _blocker(self, job: PendingJob, shape: Shape, level: int) -> Reservation | None:
        """The first reservation, in pass order, that the job would fit on but may not use."""
        key = (shape, level)
        if key not in self._blockers:
            self._blockers[key] = None
            placement = self.place(job, self.free)
            wanted = set(() if placement is None else placement.gpus)
            forbidden = self._by_time[:level]
            for reservation in self.reservations:
                if reservation in forbidden and wanted.intersection(reservation.gpus):
                    self._blockers[key] = reservation
                    break
        return self._blockers[key]

    def _own_blocker(self, job: PendingJob, shape: Shape, own: Reservation) -> Reservation | None:
        """``own`` (its queue's reservation) if the job would fit on it, else None."""
        key = (shape, own.queue)
        if key not in self._own_blockers:
            placement = self.place(job, self.free)
            wanted = () if placement is None else placement.gpus
            hit = not set(own.gpus).isdisjoint(wanted)
            self._own_blockers[key] = own if hit else None
        return self._own_blockers[key]
