"""priority_fifo: priority, then original submit time, then job id."""

from __future__ import annotations

import random

import pytest

from scheduler.domain.snapshot import PendingJob
from scheduler.policy.context import make_context
from scheduler.policy.ordering import priority_fifo

from .factories import job, snapshot


@pytest.mark.parametrize(
    ("jobs", "expected_ids"),
    [
        pytest.param(
            [
                job(1, submitted_at=10.0),
                job(2, priority=5, submitted_at=30.0),
                job(3, submitted_at=10.0),
                job(4, submitted_at=5.0),
            ],
            [2, 4, 1, 3],
            id="the docstring example",
        ),
        pytest.param(
            [job(1, priority=-1), job(2), job(3, priority=1000)], [3, 2, 1], id="priority first"
        ),
        pytest.param(
            [job(1, submitted_at=50.0), job(2, submitted_at=40.0), job(3, submitted_at=45.0)],
            [2, 3, 1],
            id="then earlier submission",
        ),
        pytest.param(
            [job(9, submitted_at=1.0), job(3, submitted_at=1.0), job(5, submitted_at=1.0)],
            [3, 5, 9],
            id="then lower id",
        ),
        pytest.param(
            # job 1 was requeued after a preemption: it keeps its original submit time
            [job(2, submitted_at=200.0), job(1, submitted_at=100.0)],
            [1, 2],
            id="a requeued job keeps its place",
        ),
        pytest.param([], [], id="nothing pending"),
    ],
)
def test_priority_fifo(jobs: list[PendingJob], expected_ids: list[int]) -> None:
    assert [j.job_id for j in priority_fifo(make_context(snapshot(pending=jobs)))] == expected_ids


def test_priority_fifo_is_a_permutation_independent_of_input_order() -> None:
    rng = random.Random(7)
    jobs = [
        job(i, priority=rng.choice([-1, 0, 1]), submitted_at=float(rng.randint(0, 5)))
        for i in range(1, 40)
    ]
    first = priority_fifo(make_context(snapshot(pending=jobs)))
    rng.shuffle(jobs)
    assert priority_fifo(make_context(snapshot(pending=jobs))) == first
    assert sorted(j.job_id for j in first) == list(range(1, 40))
