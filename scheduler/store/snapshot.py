"""Build the policy's frozen ``Snapshot`` from the database in one read.

Queues carry their org (``parent``), decayed usage (as of the usage loop's last pass)
and per-type quotas; a running attempt carries its last checkpoint, the job's attained
GPU-seconds before it, and whether a stop was already asked (``stopping``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.domain.snapshot import (
    GpuRef,
    GpuView,
    NodeView,
    PendingJob,
    QueueView,
    ResourceRequest,
    RunningJob,
    Snapshot,
    TypeQuota,
)
from scheduler.domain.spec import Resources
from scheduler.domain.status import LIVE_ATTEMPT, AttemptStatus, JobStatus, NodeState
from scheduler.store.models import (
    AllocationRow,
    AttemptRow,
    JobRow,
    NodeRow,
    QueueRow,
    QueueTypeQuotaRow,
)
from scheduler.store.nodes import NODE_LOST


def node_state(node: NodeRow) -> NodeState:
    if node.state == NODE_LOST:
        return NodeState.LOST
    return NodeState.DRAINED if node.drained else NodeState.UP


def request_of(spec: dict[str, object]) -> ResourceRequest:
    res = Resources.model_validate(spec.get("resources", {}))
    return ResourceRequest(
        gpus=res.gpus, nodes=res.nodes, gpu_type=res.gpu_type, gpu_memory_mib=res.gpu_memory_mib
    )


def live_allocations(session: Session) -> dict[tuple[int, int], tuple[int, int]]:
    """(node_id, gpu_index) -> (job_id, attempt_id) for every live allocation."""
    stmt = (
        select(AllocationRow.node_id, AllocationRow.gpu_index, AttemptRow.job_id, AttemptRow.id)
        .join(AttemptRow, AttemptRow.id == AllocationRow.attempt_id)
        .where(AllocationRow.released_at.is_(None))
    )
    return {(n, i): (j, a) for n, i, j, a in session.execute(stmt)}


def node_views(session: Session, nodes: list[NodeRow] | None = None) -> tuple[NodeView, ...]:
    nodes = nodes if nodes is not None else list(session.scalars(select(NodeRow)).unique())
    held = live_allocations(session)
    views = []
    for node in sorted(nodes, key=lambda n: n.name):
        gpus = tuple(
            GpuView(
                index=g.index,
                uuid=g.uuid,
                gpu_type=g.gpu_type,
                memory_mib=g.memory_total_mib,
                healthy=g.healthy,
                allocated_to=held.get((node.id, g.index), (None, None))[0],
            )
            for g in node.gpus
            if g.present
        )
        views.append(NodeView(name=node.name, state=node_state(node), gpus=gpus))
    return tuple(views)


def _pending(session: Session) -> tuple[PendingJob, ...]:
    """Plain columns, not rows: the cycle reads every pending job each time it runs, and
    loading them as ORM rows costs several times more than the policy's own work."""
    stmt = (
        select(
            JobRow.id,
            QueueRow.name,
            JobRow.priority,
            JobRow.submitted_at,
            JobRow.spec,
            JobRow.not_before,
            JobRow.attained_gpu_s,
        )
        .join(QueueRow, QueueRow.id == JobRow.queue_id)
        .where(JobRow.status == JobStatus.PENDING)
    )
    requests: dict[str, ResourceRequest] = {}  # a backlog repeats a few shapes
    pending = []
    for job_id, queue, priority, submitted_at, spec, not_before, attained in session.execute(stmt):
        shape = repr(spec.get("resources"))
        request = requests.get(shape) or requests.setdefault(shape, request_of(spec))
        pending.append(
            PendingJob(
                job_id=job_id,
                queue=queue,
                priority=priority,
                submitted_at=submitted_at.timestamp(),
                request=request,
                preemptible=bool(spec.get("preemptible", True)),
                time_limit_s=spec.get("time_limit_s"),
                not_before=not_before.timestamp() if not_before else None,
                attained_gpu_s=attained,
            )
        )
    return tuple(pending)


def _running(session: Session) -> tuple[RunningJob, ...]:
    names = {node_id: name for node_id, name in session.execute(select(NodeRow.id, NodeRow.name))}
    gpus_by_attempt: dict[int, list[GpuRef]] = defaultdict(list)
    for attempt_id, node_id, index in session.execute(
        select(AllocationRow.attempt_id, AllocationRow.node_id, AllocationRow.gpu_index).where(
            AllocationRow.released_at.is_(None)
        )
    ):
        gpus_by_attempt[attempt_id].append(GpuRef(names[node_id], index))
    stmt = (
        select(AttemptRow, JobRow)
        .join(JobRow, JobRow.id == AttemptRow.job_id)
        .where(AttemptRow.status.in_(sorted(LIVE_ATTEMPT)))  # indexed: no scan of ended ones
    )
    return tuple(
        RunningJob(
            job_id=job.id,
            attempt_id=attempt.id,
            queue=job.queue.name,
            priority=job.priority,
            gpus=tuple(sorted(gpus_by_attempt.get(attempt.id, []))),
            started_at=(attempt.started_at or attempt.created_at).timestamp(),
            preemptible=bool(job.spec.get("preemptible", True)),
            time_limit_s=job.spec.get("time_limit_s"),
            last_checkpoint_at=_epoch(attempt.last_checkpoint_at),
            attained_gpu_s=job.attained_gpu_s,  # added to when an attempt ends: before this one
            stopping=attempt.status is AttemptStatus.STOPPING,
        )
        for attempt, job in session.execute(stmt).unique().all()
    )


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def queue_views(session: Session) -> tuple[QueueView, ...]:
    rows = list(session.scalars(select(QueueRow).order_by(QueueRow.name)))
    names = {q.id: q.name for q in rows}
    quotas: dict[int, list[TypeQuota]] = defaultdict(list)
    for quota in session.scalars(select(QueueTypeQuotaRow).order_by(QueueTypeQuotaRow.gpu_type)):
        quotas[quota.queue_id].append(
            TypeQuota(quota.gpu_type, quota.guaranteed_gpus, quota.max_gpus)
        )
    return tuple(
        QueueView(
            name=q.name,
            weight=q.weight,
            guaranteed_gpus=q.guaranteed_gpus,
            borrow_limit_gpus=q.borrow_limit_gpus,
            max_gpus=q.max_gpus,
            parent=names.get(q.parent_id) if q.parent_id is not None else None,
            usage_gpu_s=q.usage_gpu_s,
            type_quotas=tuple(quotas.get(q.id, ())),
        )
        for q in rows
    )


def build_snapshot(session: Session, now: datetime) -> Snapshot:
    return Snapshot(
        now=now.timestamp(),
        nodes=node_views(session),
        pending=_pending(session),
        running=_running(session),
        queues=queue_views(session),
    )
