"""Small factories for policy tests: nodes, GPUs, pending jobs and snapshots.

Defaults describe the common case (an up node of healthy, free A100-80GB GPUs; a job
asking 1 GPU on 1 node, submitted at its id); a test names only what it is about.
"""

from __future__ import annotations

from collections.abc import Iterable

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

A100 = "A100-80GB"
BUSY_JOB_ID = 999  # the job that holds every GPU a factory marks busy
NOW = 1_000.0


def node(
    name: str,
    gpus: int = 8,
    *,
    busy: Iterable[int] = (),
    unhealthy: Iterable[int] = (),
    gpu_type: str = A100,
    memory_mib: int = 81_920,
    state: NodeState = NodeState.UP,
) -> NodeView:
    """A node of ``gpus`` identical GPUs; ``busy`` indices are allocated to a running job."""
    busy_set, unhealthy_set = set(busy), set(unhealthy)
    views = tuple(
        GpuView(
            index=i,
            uuid=f"GPU-{name}-{i}",
            gpu_type=gpu_type,
            memory_mib=memory_mib,
            healthy=i not in unhealthy_set,
            allocated_to=BUSY_JOB_ID if i in busy_set else None,
        )
        for i in range(gpus)
    )
    return NodeView(name=name, state=state, gpus=views)


def free_only(name: str, gpus: int, free: Iterable[int]) -> NodeView:
    """A node of ``gpus`` GPUs where only the ``free`` indices are free."""
    free_set = set(free)
    return node(name, gpus, busy=[i for i in range(gpus) if i not in free_set])


def mixed_node(name: str, *gpus: tuple[str, int], state: NodeState = NodeState.UP) -> NodeView:
    """A node whose GPUs have these (type, memory_mib), index = position."""
    views = tuple(
        GpuView(index=i, uuid=f"GPU-{name}-{i}", gpu_type=t, memory_mib=m)
        for i, (t, m) in enumerate(gpus)
    )
    return NodeView(name=name, state=state, gpus=views)


def job(
    job_id: int,
    gpus: int = 1,
    nodes: int = 1,
    *,
    priority: int = 0,
    submitted_at: float | None = None,
    gpu_type: str | None = None,
    gpu_memory_mib: int | None = None,
    not_before: float | None = None,
    queue: str = "default",
    preemptible: bool = True,
    time_limit_s: int | None = None,
) -> PendingJob:
    return PendingJob(
        job_id=job_id,
        queue=queue,
        priority=priority,
        submitted_at=float(job_id) if submitted_at is None else submitted_at,
        request=ResourceRequest(
            gpus=gpus, nodes=nodes, gpu_type=gpu_type, gpu_memory_mib=gpu_memory_mib
        ),
        not_before=not_before,
        preemptible=preemptible,
        time_limit_s=time_limit_s,
    )


def running(
    job_id: int,
    *gpus: str,
    started_at: float = NOW - 60,
    time_limit_s: int | None = None,
    preemptible: bool = False,
    stopping: bool = False,
    queue: str = "default",
) -> RunningJob:
    """A running attempt (attempt id = job id) on GPUs written "node:index"."""
    refs = tuple(GpuRef(g.split(":")[0], int(g.split(":")[1])) for g in gpus)
    return RunningJob(
        job_id=job_id,
        attempt_id=job_id,
        queue=queue,
        priority=0,
        gpus=refs,
        started_at=started_at,
        preemptible=preemptible,
        time_limit_s=time_limit_s,
        stopping=stopping,
    )


def holding(view: NodeView, *attempts: RunningJob) -> NodeView:
    """The node with the GPUs of these attempts allocated to their jobs."""
    owner = {ref.index: r.job_id for r in attempts for ref in r.gpus if ref.node == view.name}
    gpus = tuple(
        GpuView(g.index, g.uuid, g.gpu_type, g.memory_mib, g.healthy, owner.get(g.index))
        if g.index in owner
        else g
        for g in view.gpus
    )
    return NodeView(view.name, view.state, gpus)


def snapshot(
    *nodes: NodeView,
    pending: Iterable[PendingJob] = (),
    now: float = NOW,
    running: Iterable[RunningJob] = (),
    queues: Iterable[QueueView] = (),
) -> Snapshot:
    """The snapshot; the GPUs of ``running`` attempts are marked allocated on ``nodes``."""
    attempts = tuple(running)
    return Snapshot(
        now=now,
        nodes=tuple(holding(n, *attempts) for n in nodes),
        pending=tuple(pending),
        running=attempts,
        queues=tuple(queues),
    )
