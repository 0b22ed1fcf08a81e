"""Which reserved GPUs the backfill pass lends to preemptible jobs of other queues.

A reservation that is not due yet is lent (the preemption piece stops the borrower once
it is due); a due one (``reserved_at <= now``) is kept for its holder alone: a job
placed there now would only be stopped again by the preemption piece.

Times are relative to ``NOW``; node ``a`` (8 GPUs) has 4 free and 4 held by queue
``r``'s preemptible attempt; queue ``q``'s 8-GPU job reserves ``a`` and is due when
that attempt is past ``min_runtime_s`` (300 s).
"""

from __future__ import annotations

from scheduler.domain.decisions import Decisions, Wait, WaitReason
from scheduler.domain.snapshot import GpuRef, PendingJob, RunningJob, Snapshot
from scheduler.policy import make_policy
from scheduler.policy.backfill import Reservation, backfill
from scheduler.policy.context import make_context
from scheduler.policy.decide import admit_all
from scheduler.policy.ordering import priority_fifo
from scheduler.policy.placement import best_fit

from .factories import NOW, job, node, running, snapshot

BIG = job(1, 8, queue="q")
A_ALL = tuple(GpuRef("a", i) for i in range(8))


def borrower(started_at: float) -> RunningJob:
    """Queue ``r``'s preemptible attempt on ``a:4-7`` (no time limit)."""
    return running(
        90, "a:4", "a:5", "a:6", "a:7", started_at=started_at, preemptible=True, queue="r"
    )


SETTLED = borrower(NOW - 3_600)  # may be stopped now: q's reservation is due
YOUNG = borrower(NOW - 60)  # may be stopped in 4 min: due at NOW + 240


def run(snap: Snapshot) -> tuple[Decisions, list[Reservation]]:
    ctx = make_context(snap)
    decisions = backfill(ctx, priority_fifo(ctx), best_fit, admit_all)
    reservations = ctx.extra["reservations"]
    assert isinstance(reservations, list)
    return decisions, reservations


def outcome(snap: Snapshot, job_id: int) -> tuple[str, ...] | Wait:
    """The nodes ``job_id`` starts on, or its wait."""
    decisions, _ = run(snap)
    for placement in decisions.placements:
        if placement.job_id == job_id:
            return placement.nodes
    return next(w for w in decisions.waits if w.job_id == job_id)


def reserved_wait(job_id: int, gpus: int, words: str) -> Wait:
    return Wait(
        job_id,
        WaitReason.RESERVED,
        f"needs {gpus} GPUs on 1 node; the free GPUs are reserved for job 1 (8 GPUs) {words}",
        position=1,
    )


def other_queues_job() -> PendingJob:
    """Queue ``r``'s preemptible 2-GPU job 2, without a time limit."""
    return job(2, 2, queue="r", preemptible=True)


def test_a_due_reservation_is_not_lent() -> None:
    snap = snapshot(node("a", 8), pending=[BIG, other_queues_job()], running=[SETTLED])
    decisions, reservations = run(snap)
    assert reservations == [Reservation(1, "q", A_ALL, NOW, (90,))]
    assert decisions.placements == ()
    assert outcome(snap, 2) == reserved_wait(2, 2, "starting now")


def test_a_reservation_not_due_yet_is_still_lent() -> None:
    snap = snapshot(node("a", 8), pending=[BIG, other_queues_job()], running=[YOUNG])
    _, reservations = run(snap)
    assert reservations == [Reservation(1, "q", A_ALL, NOW + 240, (90,))]
    assert outcome(snap, 2) == ("a",)


def test_a_queue_with_its_own_reservation_cannot_borrow_a_due_one() -> None:
    """Queue ``s`` reserves node ``b`` (free at NOW + 600); its preemptible 2-GPU job
    may use neither ``b`` (its own queue's) nor ``a:0-3`` (``q``'s, due)."""
    held_b = running(91, *[f"b:{i}" for i in range(8)], started_at=NOW, time_limit_s=600)
    pending = [BIG, job(3, 8, queue="s"), job(4, 2, queue="s", preemptible=True)]
    snap = snapshot(node("a", 8), node("b", 8), pending=pending, running=[SETTLED, held_b])
    decisions, reservations = run(snap)
    assert [(r.job_id, r.reserved_at) for r in reservations] == [(1, NOW), (3, NOW + 600)]
    assert decisions.placements == ()
    wait = outcome(snap, 4)
    assert isinstance(wait, Wait)
    assert (wait.reason, wait.position) == (WaitReason.RESERVED, 2)
    assert wait.message.endswith("reserved for job 1 (8 GPUs) starting now")


def test_the_due_reservations_borrower_is_preempted_and_nobody_takes_its_place() -> None:
    """The whole cycle: ``r``'s settled borrower is stopped for ``q``'s due reservation
    and ``r``'s waiting job does not start on the GPUs about to be handed over."""
    policy = make_policy(preemption="reclaim", backfill="backfill")
    decisions = policy.decide(
        snapshot(node("a", 8), pending=[BIG, other_queues_job()], running=[SETTLED])
    )
    assert [p.attempt_id for p in decisions.preemptions] == [90]
    assert decisions.placements == ()
