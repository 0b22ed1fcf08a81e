"""The backfill pass: reservations, who may use reserved GPUs, waits, and starvation.

Times are relative to ``NOW``; running attempts are not preemptible unless a row says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from scheduler.domain.decisions import Decisions, Wait, WaitReason
from scheduler.domain.snapshot import GpuRef, NodeView, PendingJob, RunningJob, Snapshot
from scheduler.policy import make_policy
from scheduler.policy.backfill import Reservation, backfill
from scheduler.policy.context import PolicyParams, make_context
from scheduler.policy.decide import admit_all
from scheduler.policy.ordering import priority_fifo
from scheduler.policy.placement import best_fit

from .factories import NOW, job, node, running, snapshot


def run(snap: Snapshot, params: PolicyParams | None = None) -> tuple[Decisions, list[Reservation]]:
    ctx = make_context(snap, params)
    decisions = backfill(ctx, priority_fifo(ctx), best_fit, admit_all)
    reservations = ctx.extra["reservations"]
    assert isinstance(reservations, list)
    assert ctx.extra["pool"] is not None
    return decisions, reservations


def by_job(decisions: Decisions) -> tuple[dict[int, tuple[str, ...]], dict[int, Wait]]:
    return (
        {p.job_id: p.nodes for p in decisions.placements},
        {w.job_id: w for w in decisions.waits},
    )


def gpus(name: str, *indices: int) -> tuple[GpuRef, ...]:
    return tuple(GpuRef(name, i) for i in indices)


# node a: 8 GPUs, 4 held by a non-preemptible attempt that ends at NOW + 600.
HALF_BUSY = running(90, "a:4", "a:5", "a:6", "a:7", started_at=NOW - 3_000, time_limit_s=3_600)
BIG = job(1, 8, queue="q")


@dataclass(frozen=True)
class Backfiller:
    id: str
    job: PendingJob
    starts: bool  # else: waits, RESERVED for job 1
    extra_nodes: tuple[NodeView, ...] = ()


BACKFILLERS = [
    Backfiller("ends before the reservation", job(2, 2, preemptible=False, time_limit_s=300), True),
    Backfiller("ends exactly at it", job(2, 2, preemptible=False, time_limit_s=600), True),
    Backfiller("ends after it", job(2, 2, preemptible=False, time_limit_s=601), False),
    Backfiller("never ends by itself", job(2, 2, preemptible=False), False),
    Backfiller("preemptible: whatever its time", job(2, 2, preemptible=True), True),
    Backfiller("another queue: same rule", job(2, 2, queue="r", preemptible=False), False),
    Backfiller(
        "unreserved GPUs are everyone's",
        job(2, 2, preemptible=False),
        True,
        (node("b", 2),),
    ),
]


@pytest.mark.parametrize("case", BACKFILLERS, ids=lambda c: c.id)
def test_who_may_use_reserved_gpus(case: Backfiller) -> None:
    snap = snapshot(node("a", 8), *case.extra_nodes, pending=[BIG, case.job], running=[HALF_BUSY])
    decisions, reservations = run(snap)
    placements, waits = by_job(decisions)
    assert reservations == [Reservation(1, "q", gpus("a", *range(8)), NOW + 600)]
    assert waits[1] == Wait(
        1,
        WaitReason.INSUFFICIENT_GPUS,
        "needs 8 GPUs on 1 node; it holds a reservation on a starting in 10 min",
        position=1,
        estimated_start=NOW + 600,
    )
    if case.starts:
        assert 2 in placements
    else:
        assert waits[2].reason is WaitReason.RESERVED
        assert waits[2].message == (
            "needs 2 GPUs on 1 node; the free GPUs are reserved for job 1 (8 GPUs) "
            "starting in 10 min"
        )
        assert waits[2].estimated_start is None


def test_the_docstring_example() -> None:
    snap = snapshot(
        node("a", 8),
        pending=[
            BIG,
            job(2, 2, preemptible=False, time_limit_s=300),
            job(3, 2, preemptible=False, time_limit_s=3_600),
        ],
        running=[HALF_BUSY],
    )
    decisions, _ = run(snap)
    placements, waits = by_job(decisions)
    assert set(placements) == {2}
    assert decisions.placements[0].gpus == gpus("a", 0, 1)
    assert waits[3].reason is WaitReason.RESERVED


def test_greedy_would_let_the_small_job_take_them() -> None:
    snap = snapshot(node("a", 8), pending=[BIG, job(2, 2, preemptible=False)], running=[HALF_BUSY])
    placements, _ = by_job(make_policy(backfill="greedy").decide(snap))
    assert set(placements) == {2}


@pytest.mark.parametrize(
    ("attempt", "params", "reserved_at", "occupiers", "words"),
    [
        (
            running(90, *[f"a:{i}" for i in range(4, 8)]),
            None,
            math.inf,
            (),
            "until running jobs end",
        ),
        (
            running(90, *[f"a:{i}" for i in range(4, 8)], stopping=True),
            None,
            NOW,
            (),
            "starting now",
        ),
        (  # preemptible, started a minute ago: it may be preempted in 4 min
            running(90, *[f"a:{i}" for i in range(4, 8)], preemptible=True),
            None,
            NOW + 240,
            (90,),
            "starting in 4 min",
        ),
        (
            running(90, *[f"a:{i}" for i in range(4, 8)], preemptible=True),
            PolicyParams(reserve_preemptible_gpus=False),
            math.inf,
            (90,),
            "until running jobs end",
        ),
        (  # overdue: its time limit passed, it is being stopped
            running(90, *[f"a:{i}" for i in range(4, 8)], started_at=NOW - 900, time_limit_s=600),
            None,
            NOW,
            (),
            "starting now",
        ),
    ],
)
def test_when_a_reservation_starts(
    attempt: RunningJob,
    params: PolicyParams | None,
    reserved_at: float,
    occupiers: tuple[int, ...],
    words: str,
) -> None:
    snap = snapshot(node("a", 8), pending=[BIG], running=[attempt])
    decisions, reservations = run(snap, params)
    assert reservations == [Reservation(1, "q", gpus("a", *range(8)), reserved_at, occupiers)]
    wait = decisions.waits[0]
    assert wait.message.endswith(f"it holds a reservation on a {words}")
    assert wait.estimated_start == (None if math.isinf(reserved_at) else reserved_at)


def test_an_unknown_start_keeps_out_every_job_that_is_not_preemptible() -> None:
    forever = running(90, "a:4", "a:5", "a:6", "a:7")
    snap = snapshot(
        node("a", 8),
        pending=[BIG, job(2, 2, preemptible=False, time_limit_s=60), job(3, 2)],
        running=[forever],
    )
    placements, waits = by_job(run(snap)[0])
    assert set(placements) == {3}  # preemptible
    assert waits[2].message.endswith("reserved for job 1 (8 GPUs) until running jobs end")


def test_the_reservation_takes_the_gpus_that_free_up_first() -> None:
    early = running(90, "a:0", "a:1", "a:2", "a:3", time_limit_s=600, started_at=NOW)
    late = running(91, "a:4", "a:5", "a:6", "a:7", time_limit_s=6_000, started_at=NOW)
    snap = snapshot(node("a", 8), node("b", 4), pending=[job(1, 6)], running=[early, late])
    _, reservations = run(snap)
    # b (4 GPUs) never holds 6; on a, 0-3 free at 600, 4-5 at 6000
    assert reservations[0].gpus == gpus("a", 0, 1, 2, 3, 4, 5)
    assert reservations[0].reserved_at == NOW + 6_000


def test_one_reservation_per_queue_and_their_gpus_are_disjoint() -> None:
    attempts = [
        running(90 + i, f"{n}:{i}", time_limit_s=600 * (i + 1), started_at=NOW)
        for n in "abc"
        for i in range(4)
    ]
    snap = snapshot(
        node("a", 4),
        node("b", 4),
        node("c", 4),
        pending=[
            job(1, 4, queue="q"),
            job(2, 4, queue="q"),
            job(3, 4, queue="r"),
            job(4, 4, queue="s"),
            job(5, 4, queue="s"),
        ],
        running=attempts,
    )
    decisions, reservations = run(snap)
    assert [r.job_id for r in reservations] == [1, 3, 4]
    reserved = [ref for r in reservations for ref in r.gpus]
    assert len(reserved) == len(set(reserved)) == 12
    waits = {w.job_id: w for w in decisions.waits}
    assert "holds a reservation" not in waits[2].message
    assert waits[2].message == "needs 4 GPUs on 1 node; the most free on one node is 0"
    assert [(w.job_id, w.position) for w in decisions.waits] == [
        (1, 1),
        (2, 2),
        (3, 1),
        (4, 1),
        (5, 2),
    ]


def test_a_multi_node_job_reserves_whole_nodes() -> None:
    attempts = [
        running(90, "a:0", time_limit_s=600, started_at=NOW),
        running(91, "b:3", time_limit_s=1_200, started_at=NOW),
        running(92, "c:0", time_limit_s=60, started_at=NOW),
    ]
    snap = snapshot(
        node("a", 4),
        node("b", 4),
        node("c", 4),
        pending=[job(1, 2, nodes=2), job(2, 1, preemptible=False, time_limit_s=3_600)],
        running=attempts,
    )
    decisions, reservations = run(snap)
    assert reservations[0].gpus == gpus("a", 0, 1, 2, 3) + gpus("c", 0, 1, 2, 3)
    assert reservations[0].reserved_at == NOW + 600
    placements, _ = by_job(decisions)
    assert placements[2] == ("b",)  # the reserved nodes stay whole


def test_a_job_that_can_never_fit_reserves_nothing() -> None:
    snap = snapshot(node("a", 8), pending=[job(1, 16), job(2, 8, queue="q")], running=[HALF_BUSY])
    decisions, reservations = run(snap)
    assert [r.job_id for r in reservations] == [2]
    assert decisions.waits[0].reason is WaitReason.GPU_TYPE_UNAVAILABLE


def test_the_reservations_are_in_the_context_for_the_preemption_piece() -> None:
    snap = snapshot(node("a", 8), pending=[BIG], running=[HALF_BUSY])
    _, reservations = run(snap)
    (reservation,) = reservations
    assert reservation.job_id == 1 and reservation.reserved_at > NOW
    with pytest.raises(AttributeError):
        reservation.job_id = 2  # type: ignore[misc]


# -- starvation: a stream of small jobs ---------------------------------------------

STEP_S = 60
SMALL_LIMIT_S = 600


def simulate(pass_: str, cycles: int) -> int | None:
    """The cycle at which the big job (id 1) starts, or None.

    Two 8-GPU nodes run 2-GPU jobs that end at their time limit (10 cycles), staggered;
    a new 2-GPU non-preemptible job arrives every cycle, more than the nodes can serve.
    """
    policy = make_policy(backfill=pass_)
    attempts = [
        running(100 + i, f"{'ab'[i % 2]}:{2 * (i // 2)}", f"{'ab'[i % 2]}:{2 * (i // 2) + 1}",
                started_at=NOW - SMALL_LIMIT_S + STEP_S * (i + 1), time_limit_s=SMALL_LIMIT_S)
        for i in range(8)
    ]  # fmt: skip
    pending = [job(1, 8, submitted_at=0.0)]
    now = NOW
    for cycle in range(cycles):
        now += STEP_S
        attempts = [a for a in attempts if (a.ends_by or math.inf) > now]
        pending.append(
            job(1_000 + cycle, 2, submitted_at=now, preemptible=False, time_limit_s=SMALL_LIMIT_S)
        )
        snap = snapshot(node("a", 8), node("b", 8), pending=pending, running=attempts, now=now)
        decisions = policy.decide(snap)
        jobs = {j.job_id: j for j in pending}
        for placement in decisions.placements:
            if placement.job_id == 1:
                return cycle
            placed = jobs[placement.job_id]
            attempts.append(
                RunningJob(
                    job_id=placed.job_id,
                    attempt_id=placed.job_id,
                    queue=placed.queue,
                    priority=0,
                    gpus=placement.gpus,
                    started_at=now,
                    preemptible=False,
                    time_limit_s=placed.time_limit_s,
                )
            )
            pending.remove(placed)
    return None


def test_a_big_job_starts_under_a_stream_of_small_jobs() -> None:
    started = simulate("backfill", 40)
    assert started is not None
    assert started <= SMALL_LIMIT_S // STEP_S + 1  # within one small job's time limit


def test_without_reservations_it_starves() -> None:
    assert simulate("greedy", 40) is None
