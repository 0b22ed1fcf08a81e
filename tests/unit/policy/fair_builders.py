"""Small builders for the fair-share tests: jobs, clusters, a context with its pool.

A test names only what it is about: ``cluster`` marks the GPUs of the running jobs as
allocated, so a snapshot is consistent by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from scheduler.domain.decisions import Decisions, Wait, WaitReason
from scheduler.domain.snapshot import (
    GpuRef,
    GpuView,
    NodeView,
    PendingJob,
    QueueView,
    ResourceRequest,
    RunningJob,
    Snapshot,
)
from scheduler.domain.status import NodeState
from scheduler.policy.context import Context, PolicyParams, make_context
from scheduler.policy.pool import FreePool

A100 = "A100-80GB"
NOW = 100_000.0


def pending(
    job_id: int,
    queue: str = "default",
    gpus: int = 1,
    *,
    nodes: int = 1,
    gpu_type: str | None = None,
    priority: int = 0,
    submitted_at: float | None = None,
    preemptible: bool = True,
    attained_gpu_s: float = 0.0,
    not_before: float | None = None,
) -> PendingJob:
    """A pending job, submitted at its id unless told."""
    return PendingJob(
        job_id=job_id,
        queue=queue,
        priority=priority,
        submitted_at=float(job_id) if submitted_at is None else submitted_at,
        request=ResourceRequest(gpus=gpus, nodes=nodes, gpu_type=gpu_type),
        preemptible=preemptible,
        not_before=not_before,
        attained_gpu_s=attained_gpu_s,
    )


def running(
    job_id: int,
    queue: str,
    node: str,
    indices: Iterable[int],
    *,
    priority: int = 0,
    started_at: float = 0.0,
    preemptible: bool = True,
    last_checkpoint_at: float | None = None,
    stopping: bool = False,
) -> RunningJob:
    """A running attempt (attempt id = 10 * job id) on ``indices`` of ``node``."""
    return RunningJob(
        job_id=job_id,
        attempt_id=job_id * 10,
        queue=queue,
        priority=priority,
        gpus=tuple(GpuRef(node, i) for i in indices),
        started_at=started_at,
        preemptible=preemptible,
        last_checkpoint_at=last_checkpoint_at,
        stopping=stopping,
    )


def cluster(
    nodes: Sequence[tuple[str, int] | tuple[str, int, str]],
    *,
    queues: Sequence[QueueView] = (),
    pending_jobs: Sequence[PendingJob] = (),
    running_jobs: Sequence[RunningJob] = (),
    now: float = NOW,
) -> Snapshot:
    """Nodes ``(name, gpus[, type])``, the running jobs' GPUs marked allocated."""
    owner = {ref: r.job_id for r in running_jobs for ref in r.gpus}
    views = tuple(_node(spec, owner) for spec in nodes)
    return Snapshot(
        now=now,
        nodes=views,
        pending=tuple(pending_jobs),
        running=tuple(running_jobs),
        queues=tuple(queues),
    )


def _node(spec: tuple[str, int] | tuple[str, int, str], owner: dict[GpuRef, int]) -> NodeView:
    name, count = spec[0], spec[1]
    gpu_type = spec[2] if len(spec) == 3 else A100
    gpus = tuple(
        GpuView(i, f"GPU-{name}-{i}", gpu_type, 81_920, allocated_to=owner.get(GpuRef(name, i)))
        for i in range(count)
    )
    return NodeView(name=name, state=NodeState.UP, gpus=gpus)


def context(snapshot: Snapshot, params: PolicyParams | None = None) -> Context:
    """``make_context`` with a pool of the snapshot's free GPUs in ``extra["pool"]``."""
    ctx = make_context(snapshot, params)
    ctx.extra["pool"] = FreePool(snapshot.nodes)
    return ctx


def all_wait(snapshot: Snapshot, reason: WaitReason = WaitReason.INSUFFICIENT_GPUS) -> Decisions:
    """Decisions where every pending job waits for GPUs (no placement this pass)."""
    return Decisions(waits=tuple(Wait(j.job_id, reason, "waits") for j in snapshot.pending))
