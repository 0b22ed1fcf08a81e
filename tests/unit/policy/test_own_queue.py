"""A queue's own jobs never make way for its own reservation by preemption.

The queue's order already put its reserved (head) job first: its own preemptible jobs
may not backfill the reserved GPUs (unless they end by ``reserved_at``), the timeline
does not count its own preemptible attempts as freeing at ``min_runtime_s``, and rule 2
of ``reclaim`` never takes a victim from the reserved job's own queue. Another queue's
preemptible borrowers on a due reservation are still stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scheduler.domain.decisions import Decisions, Preemption, WaitReason
from scheduler.domain.snapshot import GpuRef, QueueView, RunningJob, Snapshot
from scheduler.policy.backfill import Reservation, backfill
from scheduler.policy.context import make_context
from scheduler.policy.decide import Policy, admit_all
from scheduler.policy.orderings import fair_share
from scheduler.policy.placement import best_fit
from scheduler.policy.preemption import reclaim
from scheduler.policy.registry import make_policy
from tests.unit.policy.fair_builders import NOW, all_wait, cluster, context, pending, running

OLD = NOW - 3_600.0  # settled: past min_runtime_s
STEP_S = 600.0  # a simulated cycle: longer than min_runtime_s (300 s)


def _policy() -> Policy:
    return make_policy(
        ordering="fair_share",
        placement="best_fit",
        preemption="reclaim",
        backfill="backfill",
        admission="quota",
    )


def _next_cycle(snap: Snapshot, decisions: Decisions, finish: int) -> Snapshot:
    """Stopped attempts end, the ``finish`` oldest others complete, placements start,
    the preempted jobs are pending again; time moves on by ``STEP_S``."""
    stopped = {p.attempt_id for p in decisions.preemptions}
    left = [r for r in snap.running if not r.stopping and r.attempt_id not in stopped]
    left = sorted(left, key=lambda r: (r.started_at, r.attempt_id))[finish:]
    jobs = {j.job_id: j for j in snap.pending}
    started = [
        running(p.job_id, jobs[p.job_id].queue, p.nodes[0], [g.index for g in p.gpus])
        for p in decisions.placements
    ]
    started = [replace(r, started_at=snap.now) for r in started]
    placed = {p.job_id for p in decisions.placements}
    requeued = [
        pending(r.job_id, r.queue, len(r.gpus)) for r in snap.running if r.attempt_id in stopped
    ]
    return cluster(
        [(n.name, len(n.gpus)) for n in snap.nodes],
        queues=snap.queues,
        pending_jobs=[j for j in snap.pending if j.job_id not in placed] + requeued,
        running_jobs=left + started,
        now=snap.now + STEP_S,
    )


def _backlog_behind_a_big_head() -> Snapshot:
    """Queue ``q`` holds all 8 GPUs of ``n`` with preemptible 1-GPU jobs (no time limit)
    and has a big head (8 GPUs, higher priority) before a backlog of 1-GPU jobs."""
    held = [running(10 + i, "q", "n", [i], started_at=OLD + i) for i in range(8)]
    head = pending(1, "q", 8, priority=1)
    backlog = [pending(100 + i, "q", 1) for i in range(30)]
    return cluster(
        [("n", 8)],
        queues=[QueueView("q"), QueueView("idle")],
        pending_jobs=[head, *backlog],
        running_jobs=held,
    )


def test_a_backlogged_queue_never_preempts_its_own_jobs_for_its_head() -> None:
    snap = _backlog_behind_a_big_head()
    preemptions: list[Preemption] = []
    for _ in range(12):
        decisions = _policy().decide(snap)
        preemptions.extend(decisions.preemptions)
        snap = _next_cycle(snap, decisions, finish=1)
        if any(r.job_id == 1 for r in snap.running):
            break
    assert preemptions == []
    # its own small jobs kept off the head's GPUs: the head started once all 8 finished
    assert [r.job_id for r in snap.running] == [1]


def test_its_own_preemptible_jobs_wait_for_its_reservation() -> None:
    snap = _backlog_behind_a_big_head()
    snap = replace(snap, running=snap.running[:4])  # GPUs 4-7 free
    snap = cluster(
        [("n", 8)], queues=snap.queues, pending_jobs=snap.pending, running_jobs=snap.running
    )
    ctx = make_context(snap)
    decisions = backfill(ctx, fair_share(ctx), best_fit, admit_all)
    assert decisions.placements == ()
    reservations = ctx.extra["reservations"]
    assert isinstance(reservations, list)
    (reservation,) = reservations
    assert isinstance(reservation, Reservation)
    assert (reservation.job_id, reservation.reserved_at, reservation.occupiers) == (
        1,
        math.inf,  # own attempts without a time limit: not "free at min runtime"
        (),  # nor occupiers the preemption piece could stop for it
    )
    waits = {w.job_id: w for w in decisions.waits}
    assert waits[100].reason is WaitReason.RESERVED
    assert "reserved for job 1 (8 GPUs)" in waits[100].message
    assert reclaim(ctx, decisions, best_fit) == ()


def test_another_queues_preemptible_job_still_backfills_the_reservation() -> None:
    snap = _backlog_behind_a_big_head()
    other = pending(200, "idle", 1)
    snap = cluster(
        [("n", 8)],
        queues=snap.queues,
        pending_jobs=[*snap.pending, other],
        running_jobs=snap.running[:4],
    )
    decisions = _policy().decide(snap)
    assert [p.job_id for p in decisions.placements] == [200]


@dataclass(frozen=True)
class _Due:
    job_id: int
    gpus: tuple[GpuRef, ...]
    reserved_at: float = NOW


def test_rule_2_never_takes_a_victim_of_the_reserved_jobs_own_queue() -> None:
    held = [running(10 + i, "q", "n", [2 * i, 2 * i + 1], started_at=OLD) for i in range(4)]
    snap = cluster(
        [("n", 8)], queues=[QueueView("q")], pending_jobs=[pending(1, "q", 8)], running_jobs=held
    )
    ctx = context(snap)
    ctx.extra["reservations"] = [_Due(1, tuple(GpuRef("n", i) for i in range(8)))]
    assert reclaim(ctx, all_wait(snap), best_fit) == ()


def _mixed_occupiers() -> Snapshot:
    """``q`` holds n0 (own preemptible jobs), ``other`` borrows n1 with a preemptible
    job and asks for nothing more (at its fair share); ``q``'s head wants 4 GPUs: its
    reservation is n1, due now (n0 is never due for ``q``: its own jobs have no limit)."""
    own = [running(10 + i, "q", "n0", [i], started_at=OLD) for i in range(4)]
    lent = [running(20, "other", "n1", range(4), started_at=OLD)]
    return cluster(
        [("n0", 4), ("n1", 4)],
        queues=[QueueView("q"), QueueView("other")],
        pending_jobs=[pending(1, "q", 4), *[pending(100 + i, "q", 1) for i in range(6)]],
        running_jobs=own + lent,
    )


def test_a_due_reservation_of_a_queue_at_its_share_waits_for_its_occupiers() -> None:
    # q holds its fair share (4 of 8): stopping other's job, at its share too, would give
    # q more than its share, and other's next reservation could then stop q's jobs
    snap = _mixed_occupiers()
    first = _policy().decide(snap)
    assert first.preemptions == ()
    assert first.placements == ()


def test_a_due_reservation_of_a_queue_below_its_share_preempts_another_queues_borrower() -> None:
    # q lost one of its own jobs (its GPU on n0 is taken by a non-preemptible job of a
    # third queue): q holds 3 of its share, below it, and other's job on n1 must go
    snap = _mixed_occupiers()
    third = running(30, "third", "n0", [3], started_at=OLD, preemptible=False)
    held = (*(r for r in snap.running if r.job_id != 13), third)
    queues = (*snap.queues, QueueView("third"))
    below = replace(snap, running=held, queues=queues)
    first = _policy().decide(below)
    assert [p.job_id for p in first.preemptions] == [20]  # other's, never q's own
    assert "reserved for job 1" in first.preemptions[0].message
    again = _policy().decide(
        replace(below, running=tuple(_stopping(r, {200}) for r in below.running))
    )
    assert again.preemptions == ()  # once: they are on their way out


def _stopping(attempt: RunningJob, attempts: set[int]) -> RunningJob:
    return replace(attempt, stopping=attempt.stopping or attempt.attempt_id in attempts)
