"""Service preemption (``reclaim_las``): less-served jobs stop more-served ones, within the
rules of fair share; plain ``reclaim`` never does."""

from __future__ import annotations

import math
from dataclasses import replace

from scheduler.domain.decisions import Preemption
from scheduler.domain.snapshot import QueueView, Snapshot
from scheduler.policy.context import PolicyParams
from scheduler.policy.placement import best_fit
from scheduler.policy.preemption import reclaim, reclaim_las
from scheduler.policy.victims import work_at_risk_s
from tests.unit.policy.fair_builders import NOW, all_wait, cluster, context, pending, running

TEAM = QueueView("team")
OTHER = QueueView("other")
# 8 GPUs since 10 minutes: 4,800 GPU-s, band 1 of the default bands (3,600, 36,000)
LONG_RUNNER = running(1, "team", "n", range(8), started_at=NOW - 600)


def _snapshot(*queues: QueueView, waiting_queue: str = "team", attained: float = 0.0) -> Snapshot:
    job = pending(2, waiting_queue, 2)
    job = replace(job, attained_gpu_s=attained)
    return cluster(
        [("n", 8)], queues=queues or (TEAM,), pending_jobs=[job], running_jobs=[LONG_RUNNER]
    )


def _las(snapshot: Snapshot) -> tuple[Preemption, ...]:
    return reclaim_las(context(snapshot), all_wait(snapshot), best_fit)


def test_a_new_job_stops_a_long_runner_of_its_queue() -> None:
    snapshot = _snapshot()
    (preemption,) = _las(snapshot)
    assert preemption.job_id == 1
    assert "less GPU service (2D-LAS band 0)" in preemption.message
    assert reclaim(context(snapshot), all_wait(snapshot), best_fit) == ()


def test_no_preemption_within_the_same_band() -> None:
    assert _las(_snapshot(attained=4_000.0)) == ()  # band 1 too


def test_a_young_attempt_is_never_stopped() -> None:
    young = running(1, "team", "n", range(8), started_at=NOW - 60)
    young = replace(young, attained_gpu_s=10_000.0)
    job = pending(2, "team", 2)
    snapshot = cluster([("n", 8)], queues=[TEAM], pending_jobs=[job], running_jobs=[young])
    assert _las(snapshot) == ()  # min_runtime_s (300 s) protects it


def test_across_queues_only_from_a_queue_over_its_share() -> None:
    # "other" has demand and a fair share of half the node; "team" holds all 8 GPUs
    assert [p.job_id for p in _las(_snapshot(TEAM, OTHER, waiting_queue="other"))] == [1]
    # with "other" guaranteed nothing and "team" guaranteed all 8, team keeps them
    guarded = QueueView("team", guaranteed_gpus=8)
    assert _las(_snapshot(guarded, OTHER, waiting_queue="other")) == ()


def _with_checkpoint(at: float | None) -> Snapshot:
    runner = replace(LONG_RUNNER, last_checkpoint_at=at)
    job = pending(2, "team", 2)
    return cluster([("n", 8)], queues=[TEAM], pending_jobs=[job], running_jobs=[runner])


def _las_losing_at_most(snapshot: Snapshot, seconds: float) -> list[int]:
    params = PolicyParams(service_loss_s=seconds)
    return [p.job_id for p in reclaim_las(context(snapshot, params), all_wait(snapshot), best_fit)]


def test_a_service_loss_limit_stops_only_attempts_just_checkpointed() -> None:
    # the long runner started 600 s ago; its work since its checkpoint is what it loses
    assert _las_losing_at_most(_with_checkpoint(NOW - 60), 120.0) == [1]  # loses 60 s
    assert _las_losing_at_most(_with_checkpoint(NOW - 300), 120.0) == []  # would lose 300 s
    assert _las_losing_at_most(_with_checkpoint(None), 120.0) == []  # 600 s since its start
    assert _las_losing_at_most(_with_checkpoint(None), 600.0) == [1]
    assert _las_losing_at_most(_with_checkpoint(NOW - 300), math.inf) == [1]  # the default


def test_work_at_risk_counts_from_the_later_of_start_and_checkpoint() -> None:
    assert work_at_risk_s(NOW, replace(LONG_RUNNER, last_checkpoint_at=NOW - 50)) == 50.0
    # a checkpoint older than the attempt (an earlier attempt's) does not count
    assert work_at_risk_s(NOW, replace(LONG_RUNNER, last_checkpoint_at=NOW - 900)) == 600.0
    assert work_at_risk_s(NOW, LONG_RUNNER) == 600.0
