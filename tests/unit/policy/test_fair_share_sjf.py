"""fair_share_sjf: fair share across queues, shortest time limit first inside one, aging."""

from __future__ import annotations

import random
from dataclasses import replace

from scheduler.domain.snapshot import PendingJob, QueueView
from scheduler.policy.context import PolicyParams, make_context
from scheduler.policy.orderings import fair_share, fair_share_sjf, shortest_first
from tests.unit.policy.fair_builders import NOW, cluster, pending

SJF_AGING_S = PolicyParams().sjf_aging_s

HOUR = 3_600.0


def _job(
    job_id: int, queue: str, limit: int | None, *, age_s: float = 60.0, priority: int = 0
) -> PendingJob:
    job = pending(job_id, queue, submitted_at=NOW - age_s, priority=priority)
    return replace(job, time_limit_s=limit)


def _sorted(jobs: list[PendingJob], aging_s: float = 4 * HOUR) -> list[int]:
    shuffled = list(jobs)
    random.Random(7).shuffle(shuffled)
    shortest_first(NOW, aging_s)(shuffled)
    return [j.job_id for j in shuffled]


def test_docstring_example_aged_then_shortest_then_no_limit() -> None:
    a = _job(1, "q", 3_600, age_s=1 * HOUR)
    b = _job(2, "q", 8 * 3_600, age_s=5 * HOUR)  # aged: pending 5 h > 4 h
    c = _job(3, "q", None, age_s=0.5 * HOUR)
    d = _job(4, "q", 7_200, age_s=600)
    assert _sorted([a, b, c, d]) == [2, 1, 4, 3]


def test_aged_jobs_go_by_submit_time_whatever_their_limit() -> None:
    jobs = [_job(1, "q", 100_000, age_s=9 * HOUR), _job(2, "q", 60, age_s=5 * HOUR)]
    assert _sorted(jobs) == [1, 2]
    assert _sorted(jobs, aging_s=10 * HOUR) == [2, 1]  # not aged yet: shortest first


def test_priority_comes_before_age_and_length() -> None:
    jobs = [_job(1, "q", 60, age_s=9 * HOUR), _job(2, "q", 86_400, priority=5)]
    assert _sorted(jobs) == [2, 1]


def test_jobs_without_a_limit_go_last_by_attained_service() -> None:
    jobs = [
        replace(_job(1, "q", None), attained_gpu_s=500.0),
        _job(2, "q", None),
        _job(3, "q", 90_000),
    ]
    assert _sorted(jobs) == [3, 2, 1]


def test_across_queues_the_fill_is_fair_shares() -> None:
    # Two queues of weights 2 and 1, 1-GPU jobs with limits in reverse submit order:
    # the queue sequence is fair_share's; inside each queue the shortest goes first.
    queues = [QueueView("A", weight=2), QueueView("B", weight=1)]
    jobs = [_job(i, "A", 10_000 - 60 * i) for i in range(12)]
    jobs += [_job(100 + i, "B", 10_000 - 60 * i) for i in range(12)]
    snap = cluster([("n", 12)], queues=queues, pending_jobs=jobs)
    sjf = fair_share_sjf(make_context(snap))
    fair = fair_share(make_context(snap))
    assert [j.queue for j in sjf] == [j.queue for j in fair]
    assert [j.job_id for j in sjf if j.queue == "A"] == list(range(11, -1, -1))
    assert [j.job_id for j in fair if j.queue == "A"] == list(range(12))


def test_without_limits_or_aged_jobs_it_is_fair_share() -> None:
    rng = random.Random(3)
    jobs = [
        replace(
            pending(i, rng.choice("ABC"), gpus=rng.choice((1, 2, 4)), priority=rng.choice((0, 1))),
            submitted_at=NOW - rng.uniform(0, SJF_AGING_S - 1),
            attained_gpu_s=rng.choice((0.0, 100.0, 5_000.0)),
        )
        for i in range(60)
    ]
    snap = cluster(
        [("n", 16)], queues=[QueueView("A"), QueueView("B", weight=2)], pending_jobs=jobs
    )
    ids = [j.job_id for j in fair_share_sjf(make_context(snap))]
    assert ids == [j.job_id for j in fair_share(make_context(snap))]


def test_the_default_aging_is_measured_from_submission() -> None:
    old = _job(1, "q", 50_000, age_s=SJF_AGING_S)  # exactly aged
    young = _job(2, "q", 60, age_s=SJF_AGING_S - 1)
    snap = cluster([("n", 1)], queues=[QueueView("q")], pending_jobs=[young, old])
    assert [j.job_id for j in fair_share_sjf(make_context(snap))] == [1, 2]
