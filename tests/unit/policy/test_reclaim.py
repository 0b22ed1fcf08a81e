"""Reclaim: guarantees come back by preemption, once, from the right victims, no cycles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from scheduler.domain.decisions import Decisions, Placement, Preemption, Wait, WaitReason
from scheduler.domain.snapshot import GpuRef, PendingJob, QueueView, RunningJob, Snapshot, TypeQuota
from scheduler.policy import preemption
from scheduler.policy.context import PolicyParams, make_context
from scheduler.policy.decide import Policy
from scheduler.policy.placement import best_fit
from scheduler.policy.preemption import reclaim
from scheduler.policy.registry import make_policy
from tests.unit.policy.fair_builders import (
    NOW,
    all_wait,
    cluster,
    context,
    pending,
    running,
)

OLD = NOW - 3_600.0  # started long enough ago to be preempted
PROD = QueueView("prod", guaranteed_gpus=4)
RESEARCH = QueueView("research")


def _reclaim(
    snapshot: Snapshot, decisions: Decisions | None = None, params: PolicyParams | None = None
) -> tuple[Preemption, ...]:
    ctx = context(snapshot, params)
    return reclaim(ctx, decisions or all_wait(snapshot), best_fit)


def _victims(preemptions: Sequence[Preemption]) -> list[int]:
    return [p.job_id for p in preemptions]


def _research_fills_node(**overrides: Mapping[str, Any]) -> list[RunningJob]:
    """Four 2-GPU research jobs on ``n`` (8 GPUs), job ids 11..14; ``overrides`` by id."""
    jobs = [running(11 + i, "research", "n", [2 * i, 2 * i + 1], started_at=OLD) for i in range(4)]
    return [replace(j, **overrides.get(str(j.job_id), {})) for j in jobs]


def _scenario(
    held: Sequence[RunningJob], job: PendingJob, queues: Sequence[QueueView] = ()
) -> Snapshot:
    return cluster(
        [("n", 8)], queues=queues or [PROD, RESEARCH], pending_jobs=[job], running_jobs=held
    )


def test_a_queue_under_its_guarantee_gets_it_back_within_one_cycle() -> None:
    held = _research_fills_node(
        **{"11": {"last_checkpoint_at": NOW - 10}, "13": {"last_checkpoint_at": NOW - 60}}
    )
    snap = _scenario(held, pending(42, "prod", 4))
    preemptions = _reclaim(snap)
    assert sorted(_victims(preemptions)) == [11, 13]  # least work lost since a checkpoint
    freed = [ref for r in held if r.job_id in _victims(preemptions) for ref in r.gpus]
    assert len(freed) == 4  # exactly enough
    assert preemptions[0].message == (
        "preempted to return queue prod its guarantee of 4 GPUs for job 42"
    )


def test_exactly_enough_when_free_gpus_help() -> None:
    held = _research_fills_node()[1:]  # GPUs 0 and 1 free
    assert len(_reclaim(_scenario(held, pending(42, "prod", 4)))) == 1


def test_no_preemption_for_a_queue_already_at_its_guarantee() -> None:
    held = [running(1, "prod", "n", range(4), started_at=OLD)]
    held += [running(2, "research", "n", range(4, 8), started_at=OLD)]
    assert _reclaim(_scenario(held, pending(42, "prod", 2))) == ()


def test_no_preemption_beyond_the_fair_share_when_guarantees_are_overcommitted() -> None:
    queues = [QueueView("prod", guaranteed_gpus=8), QueueView("dev", guaranteed_gpus=8)]
    held = [running(1, "prod", "n", range(4), started_at=OLD)]
    held += [running(2, "dev", "n", range(4, 8), started_at=OLD)]
    snap = _scenario(held, pending(42, "prod", 2), queues)  # shares 4.8 and 3.2: not owed
    assert _reclaim(snap) == ()


def test_no_preemption_for_a_job_larger_than_what_is_owed() -> None:
    held = _research_fills_node()
    assert _reclaim(_scenario(held, pending(42, "prod", 6))) == ()  # guarantee is 4


@pytest.mark.parametrize(
    "reason", [WaitReason.BACKOFF, WaitReason.WAITING_FOR_QUOTA, WaitReason.QUEUE_CAP]
)
def test_only_jobs_waiting_for_gpus_reclaim(reason: WaitReason) -> None:
    snap = _scenario(_research_fills_node(), pending(42, "prod", 2))
    assert _reclaim(snap, all_wait(snap, reason)) == ()


def test_min_runtime_is_respected() -> None:
    young = {str(i): {"started_at": NOW - 60} for i in (11, 12, 13)}
    snap = _scenario(_research_fills_node(**young), pending(42, "prod", 2))
    assert _victims(_reclaim(snap)) == [14]
    all_young = {str(i): {"started_at": NOW - 60} for i in (11, 12, 13, 14)}
    snap = _scenario(_research_fills_node(**all_young), pending(42, "prod", 2))
    assert _reclaim(snap) == ()
    assert _reclaim(snap, params=PolicyParams(min_runtime_s=30.0)) != ()


def test_non_preemptible_and_stopping_are_never_chosen() -> None:
    keep = {"11": {"preemptible": False}, "12": {"preemptible": False}, "13": {"stopping": True}}
    snap = _scenario(_research_fills_node(**keep), pending(42, "prod", 4))
    # 13 is already going (2 GPUs); 14 gives the other 2
    assert _victims(_reclaim(snap)) == [14]


def test_no_preemption_when_all_eligible_victims_would_not_suffice() -> None:
    keep = {
        "11": {"preemptible": False},
        "12": {"preemptible": False},
        "13": {"preemptible": False},
    }
    snap = _scenario(_research_fills_node(**keep), pending(42, "prod", 4))
    assert _reclaim(snap) == ()


def test_a_search_that_found_nothing_is_not_repeated_for_the_same_kind_of_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Thirty 4-GPU jobs of an owed queue that no eligible victim can make fit cost one
    search; a 2-GPU job after them, another kind, still gets its victim."""
    keep = {str(i): {"preemptible": False} for i in (11, 12, 13)}
    jobs = [pending(100 + i, "prod", 4) for i in range(30)] + [pending(200, "prod", 2)]
    snap = cluster(
        [("n", 8)],
        queues=[PROD, RESEARCH],
        pending_jobs=jobs,
        running_jobs=_research_fills_node(**keep),
    )
    searches: list[int] = []
    run = preemption._Search.run

    def counted(self: preemption._Search) -> Any:
        searches.append(self.job.job_id)
        return run(self)

    monkeypatch.setattr(preemption._Search, "run", counted)
    assert _victims(_reclaim(snap)) == [14]
    assert searches == [100, 200]


@dataclass(frozen=True)
class _Case:
    name: str
    held: list[RunningJob]
    expected: list[int]


OVER = QueueView("over")  # shares with prod owed 4: over/under are both above guarantee
UNDER = QueueView("under")


@pytest.mark.parametrize(
    "case",
    [
        _Case(
            "most over-share queue first",
            [
                running(1, "under", "n", [0, 1], started_at=OLD),
                running(2, "over", "n", [2, 3], started_at=OLD, priority=5),
                running(3, "over", "n", [4, 5], started_at=OLD, priority=5),
                running(4, "over", "n", [6, 7], started_at=OLD, priority=5),
            ],
            [2],
        ),
        _Case(
            "then lower priority",
            [
                running(1, "over", "n", [0, 1], started_at=OLD, priority=3),
                running(2, "over", "n", [2, 3], started_at=OLD, priority=1),
                running(3, "over", "n", [4, 5], started_at=OLD, priority=2),
                running(4, "under", "n", [6, 7], started_at=OLD),
            ],
            [2],
        ),
        _Case(
            "then least work lost since the last checkpoint",
            [
                running(1, "over", "n", [0, 1], started_at=OLD, last_checkpoint_at=NOW - 50),
                running(2, "over", "n", [2, 3], started_at=OLD, last_checkpoint_at=NOW - 5),
                running(3, "over", "n", [4, 5], started_at=OLD),
                running(4, "under", "n", [6, 7], started_at=OLD),
            ],
            [2],
        ),
        _Case(
            "work lost counts GPUs: 1 GPU for 100 s before 2 GPUs for 60 s",
            [
                running(1, "over", "n", [0], started_at=OLD, last_checkpoint_at=NOW - 100),
                running(2, "over", "n", [1, 2], started_at=OLD, last_checkpoint_at=NOW - 60),
                running(3, "over", "n", [3, 4], started_at=OLD),
                running(4, "under", "n", [5, 6, 7], started_at=OLD),
            ],
            [1],
        ),
        _Case(
            "victims the fit does not need are dropped",
            [
                running(1, "over", "n", [0], started_at=OLD, last_checkpoint_at=NOW - 1),
                running(2, "over", "n", [1, 2, 3], started_at=OLD, last_checkpoint_at=NOW - 40),
                running(3, "over", "n", [4, 5], started_at=OLD),
                running(4, "under", "n", [6, 7], started_at=OLD),
            ],
            [2],  # 1 goes first but one GPU is not enough; once 2 goes, 1 is not needed
        ),
    ],
    ids=lambda c: c.name,
)
def test_victim_order(case: _Case) -> None:
    queues = [PROD, OVER, UNDER]
    gpus = 1 if "counts GPUs" in case.name else 2
    snap = _scenario(case.held, pending(42, "prod", gpus), queues)
    assert _victims(_reclaim(snap)) == case.expected


def _apply(snapshot: Snapshot, preemptions: Sequence[Preemption]) -> Snapshot:
    gone = {p.attempt_id for p in preemptions}
    return replace(
        snapshot,
        running=tuple(
            replace(r, stopping=r.stopping or r.attempt_id in gone) for r in snapshot.running
        ),
    )


def _finish_stopping_and_place(snapshot: Snapshot) -> Snapshot:
    """The stopping attempts end; every pending job that fits starts (first fit)."""
    left = tuple(r for r in snapshot.running if not r.stopping)
    snap = cluster(
        [(n.name, len(n.gpus)) for n in snapshot.nodes],
        queues=snapshot.queues,
        running_jobs=left,
    )
    pool = context(snap).extra["pool"]
    started = list(left)
    still: list[PendingJob] = []
    for job in snapshot.pending:
        placement = best_fit(job, pool)  # type: ignore[arg-type]
        if placement is None:
            still.append(job)
            continue
        pool.take(placement)  # type: ignore[attr-defined]
        started.append(
            RunningJob(job.job_id, job.job_id * 10, job.queue, job.priority, placement.gpus, NOW)
        )
    return cluster(
        [(n.name, len(n.gpus)) for n in snapshot.nodes],
        queues=snapshot.queues,
        pending_jobs=still,
        running_jobs=started,
    )


def test_no_cycles() -> None:
    snap = _scenario(_research_fills_node(), pending(42, "prod", 4))
    first = _reclaim(snap)
    assert len(first) == 2
    waiting = _apply(snap, first)  # victims are stopping: the job waits for their GPUs
    assert _reclaim(waiting) == ()
    placed = _finish_stopping_and_place(waiting)
    assert [r.job_id for r in placed.running if r.queue == "prod"] == [42]
    more = replace(placed, pending=(pending(43, "research", 4),))  # research wants them back
    assert _reclaim(more) == ()


def test_victims_are_not_reused_for_the_next_job() -> None:
    jobs = [pending(42, "prod", 2), pending(43, "prod", 2)]
    snap = cluster(
        [("n", 8)], queues=[PROD, RESEARCH], pending_jobs=jobs, running_jobs=_research_fills_node()
    )
    assert sorted(_victims(_reclaim(snap))) == [11, 12]


def test_a_victim_queue_keeps_its_guarantee() -> None:
    queues = [PROD, QueueView("research", guaranteed_gpus=6), QueueView("other")]
    young = [running(21, "other", "m", [0, 1, 2, 3], started_at=NOW)]
    snap = cluster(
        [("n", 8), ("m", 4)],
        queues=queues,
        pending_jobs=[pending(42, "prod", 4)],
        running_jobs=[*_research_fills_node(), *young],
    )
    # shares: prod 4, research 6, other 2. research holds 8 with a guarantee of 6: only
    # one of its 2-GPU jobs may go, and 2 GPUs are not enough for the 4-GPU job
    assert _reclaim(snap) == ()
    assert len(_reclaim(replace(snap, queues=(PROD, RESEARCH, QueueView("other"))))) == 2


def test_nested_org_guarantee_is_shared_by_its_teams() -> None:
    queues = [
        QueueView("ml", guaranteed_gpus=4),
        QueueView("a", parent="ml"),
        QueueView("b", parent="ml"),
        RESEARCH,
    ]
    snap = _scenario(_research_fills_node(), pending(42, "a", 2), queues)
    assert len(_reclaim(snap)) == 1


def test_type_guarantee_bounds_what_a_typed_job_reclaims() -> None:
    quota = (TypeQuota("H100", guaranteed_gpus=2),)
    queues = [QueueView("prod", guaranteed_gpus=8, type_quotas=quota), RESEARCH]
    held = [running(11 + i, "research", "h", [2 * i, 2 * i + 1], started_at=OLD) for i in range(4)]
    nodes = [("h", 8, "H100")]
    small = cluster(
        nodes,
        queues=queues,
        pending_jobs=[pending(42, "prod", 2, gpu_type="H100")],
        running_jobs=held,
    )
    big = cluster(
        nodes,
        queues=queues,
        pending_jobs=[pending(42, "prod", 4, gpu_type="H100")],
        running_jobs=held,
    )
    assert len(_reclaim(small)) == 1
    assert _reclaim(big) == ()  # within the guarantee of 8, but above the H100 guarantee of 2


@dataclass(frozen=True)
class _Reservation:
    job_id: int
    gpus: tuple[GpuRef, ...]
    reserved_at: float


def test_a_due_reservation_preempts_its_backfilled_occupiers() -> None:
    queues = [QueueView("big"), QueueView("small")]
    held = [running(5, "small", "n", [6, 7], started_at=OLD)]
    snap = cluster(
        [("n", 8)], queues=queues, pending_jobs=[pending(42, "big", 8)], running_jobs=held
    )
    reserved = tuple(GpuRef("n", i) for i in range(8))

    def run(reserved_at: float) -> tuple[Preemption, ...]:
        ctx = context(snap)
        ctx.extra["reservations"] = [_Reservation(42, reserved, reserved_at)]
        return reclaim(ctx, all_wait(snap), best_fit)

    due = run(NOW)
    assert _victims(due) == [5]
    assert "reserved for job 42" in due[0].message
    assert run(NOW + 60) == ()


def test_a_due_reservation_spares_an_occupier_below_its_fair_share() -> None:
    queues = [QueueView("big"), QueueView("small", guaranteed_gpus=0)]
    held = [running(5, "small", "n", [6, 7], started_at=OLD)]
    jobs = [pending(42, "big", 8), pending(43, "small", 6)]  # small's share is 4, holds 2
    snap = cluster([("n", 8)], queues=queues, pending_jobs=jobs, running_jobs=held)
    ctx = context(snap)
    ctx.extra["reservations"] = [_Reservation(42, tuple(GpuRef("n", i) for i in range(8)), NOW)]
    assert reclaim(ctx, all_wait(snap), best_fit) == ()


def test_placements_of_the_pass_are_not_counted_as_free() -> None:
    jobs = [pending(42, "prod", 4), pending(99, "research", 2)]
    held = _research_fills_node()[:3]  # GPUs 6 and 7 free before the pass
    snap = cluster([("n", 8)], queues=[PROD, RESEARCH], pending_jobs=jobs, running_jobs=held)
    ctx = context(snap)
    placed = Placement(99, ("n",), (GpuRef("n", 6), GpuRef("n", 7)))
    ctx.extra["pool"].take(placed)  # type: ignore[attr-defined]
    ctx.charge(jobs[1])
    decisions = Decisions(
        placements=(placed,), waits=(Wait(42, WaitReason.INSUFFICIENT_GPUS, "waits"),)
    )
    assert _victims(reclaim(ctx, decisions, best_fit)) == [11, 12]


def test_without_a_pool_of_the_pass_it_rebuilds_one_from_the_snapshot() -> None:
    jobs = [pending(42, "prod", 4), pending(99, "research", 2)]
    held = _research_fills_node()[:3]
    snap = cluster([("n", 8)], queues=[PROD, RESEARCH], pending_jobs=jobs, running_jobs=held)
    ctx = make_context(snap)  # no ctx.extra["pool"]
    ctx.charge(jobs[1])
    placed = Placement(99, ("n",), (GpuRef("n", 6), GpuRef("n", 7)))
    decisions = Decisions(
        placements=(placed,), waits=(Wait(42, WaitReason.INSUFFICIENT_GPUS, "waits"),)
    )
    assert _victims(reclaim(ctx, decisions, best_fit)) == [11, 12]


# --- with the real pass -------------------------------------------------------------


def _policy() -> Policy:
    """The pieces the server uses by default, by their registry names."""
    return make_policy(
        ordering="fair_share",
        placement="best_fit",
        preemption="reclaim",
        backfill="backfill",
        admission="quota",
    )


def _two_full_nodes() -> Snapshot:
    """research (no guarantee) holds both 8-GPU nodes; prod (guarantee 8) wants 8."""
    held = [
        running(11 + i, "research", f"n{i // 4}", [2 * (i % 4), 2 * (i % 4) + 1], started_at=OLD)
        for i in range(8)
    ]
    queues = [QueueView("prod", guaranteed_gpus=8), RESEARCH]
    return cluster(
        [("n0", 8), ("n1", 8)],
        queues=queues,
        pending_jobs=[pending(42, "prod", 8)],
        running_jobs=held,
    )


def test_with_the_backfill_pass_one_cycle_returns_the_guarantee_and_no_more() -> None:
    snap = _two_full_nodes()
    first = _policy().decide(snap).preemptions
    assert sorted(_victims(first)) == [11, 12, 13, 14]  # exactly one node's worth
    waiting = _apply(snap, first)
    assert _policy().decide(waiting).preemptions == ()
    placed = _finish_stopping_and_place(waiting)
    assert [r.job_id for r in placed.running if r.queue == "prod"] == [42]
    again = replace(placed, pending=(pending(43, "research", 8), pending(44, "research", 2)))
    decisions = _policy().decide(again)
    assert decisions.preemptions == ()


@pytest.mark.parametrize(
    ("preemptible", "reserved_at", "victims"),
    [
        (False, NOW + 3_600, 2),  # a non-preemptible job may not use another's reservation
        (True, NOW + 3_600, 0),  # a preemptible one may (as in the pass): it fits
        (True, NOW, 2),  # but not one that is due now
    ],
)
def test_reclaim_keeps_off_the_reservations_of_other_jobs(
    preemptible: bool, reserved_at: float, victims: int
) -> None:
    queues = [QueueView("big"), PROD, RESEARCH]
    held = [running(11 + i, "research", "n1", [2 * i, 2 * i + 1], started_at=OLD) for i in range(4)]
    jobs = [pending(50, "big", 8), pending(42, "prod", 4, preemptible=preemptible)]
    snap = cluster([("n0", 8), ("n1", 8)], queues=queues, pending_jobs=jobs, running_jobs=held)
    ctx = context(snap)
    ctx.extra["reservations"] = [
        _Reservation(50, tuple(GpuRef("n0", i) for i in range(8)), reserved_at)
    ]
    decisions = Decisions(waits=(Wait(42, WaitReason.RESERVED, "reserved for job 50"),))
    assert len(reclaim(ctx, decisions, best_fit)) == victims


def test_with_the_backfill_pass_a_due_reservation_stops_its_occupier_once() -> None:
    queues = [QueueView("big"), QueueView("small")]
    held = [running(5, "small", "n", range(4), started_at=OLD)]  # preemptible, settled
    snap = cluster(
        [("n", 8)], queues=queues, pending_jobs=[pending(42, "big", 8)], running_jobs=held
    )
    first = _policy().decide(snap).preemptions
    assert _victims(first) == [5]
    assert first[0].message == "preempted to free the GPUs reserved for job 42, due now"
    assert _policy().decide(_apply(snap, first)).preemptions == ()


def test_the_gpu_returned_for_a_guarantee_goes_to_the_owed_queue() -> None:
    # 16 GPUs: A (guarantee 4) holds 3; B (weight 4) holds 5 one-GPU attempts, below
    # its share of 9.6; C holds 8 (not preemptible) over its share. B is further below
    # its share than A (normalised 1.15 against 1.0), yet A is owed its guarantee: the
    # GPU taken from B for it must not go back to B in the next cycle (a preemption
    # every ``min_runtime_s`` that never serves A)
    queues = [QueueView("A", guaranteed_gpus=4), QueueView("B", weight=4), QueueView("C")]
    b_runs = [running(61 + i, "B", "n", [3 + i], started_at=OLD) for i in range(5)]
    held = [
        running(50, "A", "n", range(3), started_at=OLD),
        *b_runs,
        running(52, "C", "n", range(8, 16), preemptible=False, started_at=OLD),
    ]
    jobs = [pending(1, "A"), *[pending(i, "B") for i in range(2, 8)]]
    snap = cluster([("n", 16)], queues=queues, pending_jobs=jobs, running_jobs=held)
    first = _policy().decide(snap)
    assert first.placements == ()
    [victim] = first.preemptions
    assert victim.job_id in {r.job_id for r in b_runs}
    # the victim stopped and is pending again in B; its GPU is free
    gone = next(r for r in held if r.attempt_id == victim.attempt_id)
    requeued = pending(victim.job_id, "B", attained_gpu_s=3_600.0, submitted_at=0.0)
    after = cluster(
        [("n", 16)],
        queues=queues,
        pending_jobs=[*jobs, requeued],
        running_jobs=[r for r in held if r is not gone],
    )
    second = _policy().decide(after)
    assert [(p.job_id, p.gpus) for p in second.placements] == [(1, gone.gpus)]
    assert second.preemptions == ()
