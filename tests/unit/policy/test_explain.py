"""Wait bookkeeping and wording: positions per queue, one explanation per key, times."""

from __future__ import annotations

import math

import pytest

from scheduler.domain.decisions import Wait, WaitReason
from scheduler.domain.snapshot import GpuRef, NodeView, PendingJob, ResourceRequest
from scheduler.policy.context import PolicyParams
from scheduler.policy.explain import WaitList, starting
from scheduler.policy.timeline import Slot, Timeline

from .factories import NOW, job, node, running, snapshot


def test_positions_count_per_queue_in_pass_order() -> None:
    waits = WaitList()
    explained: list[int] = []

    def explain(pending: PendingJob) -> Wait:
        explained.append(pending.job_id)
        return Wait(0, WaitReason.INSUFFICIENT_GPUS, "too big", estimated_start=NOW + 5)

    waits.add(job(1, queue="q"), None, 0)
    waits.add(job(2, queue="r"), Wait(2, WaitReason.BACKOFF, "backoff"))
    waits.add(job(3, queue="q"), None, 0)
    waits.add(job(4, queue="q"), Wait(4, WaitReason.QUEUE_CAP, "cap"))
    assert waits.finish(explain) == (
        Wait(1, WaitReason.INSUFFICIENT_GPUS, "too big", 1, NOW + 5),
        Wait(2, WaitReason.BACKOFF, "backoff", 1),
        Wait(3, WaitReason.INSUFFICIENT_GPUS, "too big", 2, NOW + 5),
        Wait(4, WaitReason.QUEUE_CAP, "cap", 3),
    )
    assert explained == [1]  # once per key


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (math.inf, "until running jobs end"),
        (-5, "starting now"),
        (0, "starting now"),
        (0.2, "starting in 1 s"),
        (59, "starting in 59 s"),
        (60, "starting in 1 min"),
        (721, "starting in 13 min"),
        (3_600, "starting in 1 h"),
        (7_500, "starting in 2 h 5 min"),
    ],
)
def test_starting(seconds: float, words: str) -> None:
    assert starting(NOW + seconds, NOW) == words


def test_the_timeline_docstring_example() -> None:
    a: NodeView = node("a", 8)
    snap = snapshot(
        a,
        running=[
            running(90, "a:4", "a:5", time_limit_s=600, started_at=NOW),
            running(91, "a:6", "a:7"),
        ],
    )
    timeline = Timeline(snap, PolicyParams())
    six, eight = ResourceRequest(6), ResourceRequest(8)
    assert timeline.earliest(six) == Slot(NOW + 600, tuple(GpuRef("a", i) for i in range(6)))
    assert timeline.earliest(eight) == Slot(math.inf, tuple(GpuRef("a", i) for i in range(8)))
    timeline.block([GpuRef("a", 0)])
    assert timeline.earliest(eight) is None
    assert timeline.earliest(ResourceRequest(0)) is None
