"""Admission by quota: caps, org caps, type caps, borrow limits, non-preemptible jobs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from scheduler.domain.decisions import WaitReason
from scheduler.domain.snapshot import PendingJob, QueueView, RunningJob, TypeQuota
from scheduler.policy.admission import quota
from scheduler.policy.context import make_context
from tests.unit.policy.fair_builders import cluster, pending, running

H100 = "H100"


def _held(queue: str, gpus: int, node: str = "n", first: int = 0) -> RunningJob:
    return running(900 + first, queue, node, range(first, first + gpus))


def _admit(
    queues: Sequence[QueueView], held: Sequence[RunningJob], job: PendingJob
) -> tuple[WaitReason | None, str]:
    snap = cluster(
        [("n", 32), ("h", 8, H100)], queues=queues, pending_jobs=[job], running_jobs=held
    )
    wait = quota(make_context(snap), job)
    return (None, "") if wait is None else (wait.reason, wait.message)


ORG = [QueueView("ml", max_gpus=10, guaranteed_gpus=6), QueueView("a", parent="ml")]


@pytest.mark.parametrize(
    ("queues", "held", "job", "reason", "says"),
    [
        pytest.param(
            [QueueView("research", max_gpus=16)],
            [_held("research", 16)],
            pending(1, "research", 2),
            WaitReason.QUEUE_CAP,
            "queue research holds 16 of its cap of 16 GPUs; the job needs 2",
            id="queue cap",
        ),
        pytest.param(
            [QueueView("research", max_gpus=16)],
            [_held("research", 14)],
            pending(1, "research", 2),
            None,
            "",
            id="queue cap reached exactly",
        ),
        pytest.param(
            ORG,
            [_held("a", 9)],
            pending(1, "a", 2),
            WaitReason.QUEUE_CAP,
            "org ml holds 9 of its cap of 10 GPUs",
            id="org cap",
        ),
        pytest.param(
            [QueueView("r", guaranteed_gpus=8, borrow_limit_gpus=4)],
            [_held("r", 10)],
            pending(1, "r", 4),
            WaitReason.WAITING_FOR_QUOTA,
            "queue r may hold 12 GPUs (its guarantee of 8 plus a borrow limit of 4) and "
            "holds 10; the job needs 4",
            id="borrow limit",
        ),
        pytest.param(
            [QueueView("r", guaranteed_gpus=8, borrow_limit_gpus=4)],
            [_held("r", 10)],
            pending(1, "r", 2),
            None,
            "",
            id="within the borrow limit",
        ),
        pytest.param(
            [QueueView("ml", borrow_limit_gpus=2), QueueView("a", parent="ml")],
            [_held("a", 2)],
            pending(1, "a", 1),
            WaitReason.WAITING_FOR_QUOTA,
            "org ml may hold 2 GPUs",
            id="org borrow limit",
        ),
        pytest.param(
            [QueueView("prod", guaranteed_gpus=8)],
            [_held("prod", 6)],
            pending(1, "prod", 2, preemptible=False),
            None,
            "",
            id="non-preemptible inside the guarantee",
        ),
        pytest.param(
            [QueueView("prod", guaranteed_gpus=8)],
            [_held("prod", 6)],
            pending(7, "prod", 4, preemptible=False),
            WaitReason.WAITING_FOR_QUOTA,
            "job 7 is not preemptible, so it runs only inside queue prod's guarantee of "
            "8 GPUs; the queue holds 6 and the job needs 4",
            id="non-preemptible beyond the guarantee",
        ),
        pytest.param(
            ORG,
            [_held("a", 4)],
            pending(7, "a", 2, preemptible=False),
            None,
            "",
            id="non-preemptible inside the org's guarantee",
        ),
        pytest.param(
            ORG,
            [_held("a", 5)],
            pending(7, "a", 2, preemptible=False),
            WaitReason.WAITING_FOR_QUOTA,
            "or org ml's of 6",
            id="non-preemptible beyond the org's guarantee",
        ),
        pytest.param(
            [QueueView("r", type_quotas=(TypeQuota(H100, max_gpus=2),))],
            [_held("r", 2, node="h")],
            pending(1, "r", 1, gpu_type="h100"),
            WaitReason.QUEUE_CAP,
            "queue r holds 2 of its cap of 2 H100 GPUs; the job needs 1",
            id="type cap",
        ),
        pytest.param(
            [QueueView("r", type_quotas=(TypeQuota(H100, max_gpus=2),))],
            [_held("r", 2, node="h")],
            pending(1, "r", 4),
            None,
            "",
            id="a job of no type is not held back by type caps",
        ),
        pytest.param(
            [QueueView("r", max_gpus=1)],
            [_held("r", 1)],
            pending(1, "r", 0),
            None,
            "",
            id="a job without GPUs",
        ),
    ],
)
def test_quota(
    queues: Sequence[QueueView],
    held: Sequence[RunningJob],
    job: PendingJob,
    reason: WaitReason | None,
    says: str,
) -> None:
    got_reason, message = _admit(queues, held, job)
    assert got_reason == reason
    assert says in message


def test_quota_sees_the_charges_of_the_pass() -> None:
    queues = [QueueView("r", max_gpus=4, type_quotas=(TypeQuota(H100, max_gpus=3),))]
    jobs = [pending(i, "r", 1, gpu_type=H100) for i in range(1, 6)]
    ctx = make_context(cluster([("h", 8, H100)], queues=queues, pending_jobs=jobs))
    admitted = []
    for job in jobs:
        if quota(ctx, job) is None:
            ctx.charge(job)
            admitted.append(job.job_id)
    assert admitted == [1, 2, 3]  # the type cap of 3 binds before the queue cap of 4
    assert ctx.queues["r"].held_by_type == {"h100": 3}


def test_running_gpus_count_by_type() -> None:
    queues = [QueueView("ml"), QueueView("a", parent="ml")]
    held = [running(1, "a", "h", [0, 1]), running(2, "a", "n", [0]), running(3, "a", "n", [1])]
    snap = cluster([("n", 4), ("h", 4, H100)], queues=queues, running_jobs=held)
    ctx = make_context(snap)
    assert ctx.queues["a"].held_by_type == {"h100": 2, "a100-80gb": 2}
    assert ctx.queues["ml"].held_by_type == {"h100": 2, "a100-80gb": 2}
    assert ctx.queues["ml"].held == 4


def test_work_conserving_a_queue_above_its_fair_share_still_borrows() -> None:
    queues = [QueueView("r", guaranteed_gpus=2), QueueView("other", guaranteed_gpus=30)]
    jobs = [pending(1, "r", 8), pending(2, "other", 30)]
    snap = cluster([("n", 40)], queues=queues, pending_jobs=jobs, running_jobs=[_held("r", 20)])
    ctx = make_context(snap)
    assert ctx.queues["r"].fair_share == pytest.approx(10)  # other's floor is 30
    assert quota(ctx, jobs[0]) is None
