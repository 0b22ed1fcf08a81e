"""The control-plane benchmark's packing check: GPU time left free while a waiting job
fit, and the rounds of placements that left such a job waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from benchmarks.packing import packing
from scheduler.domain.views import AttemptView, GpuRefView, JobView

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Held = tuple[float, float, list[tuple[str, int]]]  # placed at, ended at, GPUs


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(job_id: int, gpus: int, submitted: float, *held: Held) -> JobView:
    attempts = [
        AttemptView(
            id=job_id * 10 + n,
            number=n + 1,
            status="ended",
            created_at=at(start),
            ended_at=at(end),
            gpus=[GpuRefView(node=node, index=index) for node, index in refs],
        )
        for n, (start, end, refs) in enumerate(held)
    ]
    return JobView(
        id=job_id,
        name="j",
        queue="default",
        status="succeeded",
        priority=0,
        spec={"resources": {"gpus": gpus}},
        submitted_at=at(submitted),
        updated_at=at(submitted),
        attempts=attempts,
    )


def test_a_job_left_waiting_beside_a_free_gpu_is_a_hole() -> None:
    jobs = [
        job(1, 1, 0, (0, 10, [("n1", 0)])),
        job(2, 1, 0, (10, 12, [("n1", 0)])),  # waits 0..10 though n1 has a GPU free
        job(3, 1, 5, (5, 6, [("n2", 0)])),  # a round of placements at 5
    ]
    result = packing(jobs, {"n1": 2, "n2": 1})
    assert (result.rounds, result.rounds_leaving_a_fit) == (2, 1)  # the round at 5 left it
    assert result.idle_while_needed_gpu_s > 0
    assert result.busy_gpu_s == 13.0


def test_a_job_too_big_for_the_free_gpus_leaves_no_hole() -> None:
    jobs = [
        job(1, 1, 0, (0, 10, [("n1", 0)])),
        job(2, 2, 0, (10, 12, [("n1", 0), ("n1", 1)])),
        job(3, 1, 5, (5, 6, [("n2", 0)])),
    ]
    result = packing(jobs, {"n1": 2, "n2": 1})
    assert (result.rounds, result.rounds_leaving_a_fit) == (2, 0)
    assert result.idle_while_needed_gpu_s == 0.0


def test_a_release_the_cycle_could_not_see_yet_is_no_hole() -> None:
    jobs = [
        job(1, 1, 0, (0, 4, [("n1", 0)])),
        job(2, 1, 0, (5, 9, [("n2", 0)])),  # n1's GPU came free at 4, after the round at 0
        job(3, 1, 0, (6, 9, [("n1", 0)])),
    ]
    result = packing(jobs, {"n1": 1, "n2": 1})
    assert (result.rounds, result.rounds_leaving_a_fit) == (2, 0)
