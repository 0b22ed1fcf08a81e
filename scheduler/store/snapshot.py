"""Build the policy's frozen ``Snapshot`` from the database in one read.

Queues carry their org (``parent``), decayed usage (as of the usage loop's last pass)
and per-type quotas; a running attempt carries its last checkpoint, the job's attained
GPU-seconds before it, and whether a stop was already asked (``stopping``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
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
    GpuRow,
    JobRow,
    NodeRow,
    QueueRow,
    QueueTypeQuotaRow,
)
from scheduler.store.nodes import NODE_LOST


def node_state(node: NodeRow) -> NodeState:
    return _node_state(node.state, node.drained)


def _node_state(state: str, drained: bool) -> NodeState:
    if state == NODE_LOST:
        return NodeState.LOST
    return NodeState.DRAINED if drained else NodeState.UP


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


def node_views(session: Session) -> tuple[NodeView, ...]:
    """Every node with its present GPUs, by name. Plain columns, not rows: the cycle and
    each submit read them."""
    held = live_allocations(session)
    gpus: dict[int, list[GpuView]] = defaultdict(list)
    present = (
        select(
            GpuRow.node_id,
            GpuRow.index,
            GpuRow.uuid,
            GpuRow.gpu_type,
            GpuRow.memory_total_mib,
            GpuRow.healthy,
        )
        .where(GpuRow.present)
        .order_by(GpuRow.node_id, GpuRow.index)
    )
    for node_id, index, uuid, gpu_type, memory_mib, healthy in session.execute(present):
        gpus[node_id].append(
            GpuView(
                index=index,
                uuid=uuid,
                gpu_type=gpu_type,
                memory_mib=memory_mib,
                healthy=healthy,
                allocated_to=held.get((node_id, index), (None, None))[0],
            )
        )
    nodes = select(NodeRow.id, NodeRow.name, NodeRow.state, NodeRow.drained).order_by(NodeRow.name)
    return tuple(
        NodeView(name=name, state=_node_state(state, drained), gpus=tuple(gpus[node_id]))
        for node_id, name, state, drained in session.execute(nodes)
    )


@dataclass(frozen=True)
class _SpecFacts:
    """What the policy needs of a job's spec (a spec never changes once submitted)."""

    request: ResourceRequest
    preemptible: bool
    time_limit_s: int | None


_SPEC_FACTS: dict[str, _SpecFacts] = {}  # spec digest -> its facts, for this process
_SPEC_FACTS_MAX = 10_000


def _spec_facts(session: Session, first_job: dict[str, int]) -> dict[str, _SpecFacts]:
    """The facts of the specs with these digests (``digest -> a job that has it``):
    parsed once per process and spec; a backlog repeats a few specs."""
    missing = [job_id for digest, job_id in first_job.items() if digest not in _SPEC_FACTS]
    if missing:
        if len(_SPEC_FACTS) + len(missing) > _SPEC_FACTS_MAX:
            _SPEC_FACTS.clear()
        stmt = select(JobRow.spec_digest, JobRow.spec).where(JobRow.id.in_(missing))
        for digest, spec in session.execute(stmt):
            _SPEC_FACTS[digest] = _SpecFacts(
                request=request_of(spec),
                preemptible=bool(spec.get("preemptible", True)),
                time_limit_s=spec.get("time_limit_s"),
            )
    return {digest: _SPEC_FACTS[digest] for digest in first_job}


def _pending(session: Session) -> tuple[PendingJob, ...]:
    """Plain columns, not rows: the cycle reads every pending job each time it runs, and
    loading them as ORM rows costs several times more than the policy's own work. The
    spec itself is read once per process and digest, not each time (``_spec_facts``)."""
    stmt = (
        select(
            JobRow.id,
            QueueRow.name,
            JobRow.priority,
            JobRow.submitted_at,
            JobRow.spec_digest,
            JobRow.not_before,
            JobRow.attained_gpu_s,
        )
        .join(QueueRow, QueueRow.id == JobRow.queue_id)
        .where(JobRow.status == JobStatus.PENDING)
    )
    rows = session.execute(stmt).all()
    facts = _spec_facts(session, {row.spec_digest: row.id for row in rows})
    pending = []
    for job_id, queue, priority, submitted_at, digest, not_before, attained in rows:
        spec = facts[digest]
        pending.append(
            PendingJob(
                job_id=job_id,
                queue=queue,
                priority=priority,
                submitted_at=submitted_at.timestamp(),
                request=spec.request,
                preemptible=spec.preemptible,
                time_limit_s=spec.time_limit_s,
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
        select(
            AttemptRow.id,
            AttemptRow.job_id,
            AttemptRow.status,
            AttemptRow.started_at,
            AttemptRow.created_at,
            AttemptRow.last_checkpoint_at,
            QueueRow.name,
            JobRow.priority,
            JobRow.spec_digest,
            JobRow.attained_gpu_s,
        )
        .join(JobRow, JobRow.id == AttemptRow.job_id)
        .join(QueueRow, QueueRow.id == JobRow.queue_id)
        .where(AttemptRow.status.in_(sorted(LIVE_ATTEMPT)))  # indexed: no scan of ended ones
    )
    rows = session.execute(stmt).all()  # plain columns, as for the pending jobs
    facts = _spec_facts(session, {row.spec_digest: row.job_id for row in rows})
    return tuple(
        RunningJob(
            job_id=row.job_id,
            attempt_id=row.id,
            queue=row.name,
            priority=row.priority,
            gpus=tuple(sorted(gpus_by_attempt.get(row.id, []))),
            started_at=(row.started_at or row.created_at).timestamp(),
            preemptible=facts[row.spec_digest].preemptible,
            time_limit_s=facts[row.spec_digest].time_limit_s,
            last_checkpoint_at=_epoch(row.last_checkpoint_at),
            attained_gpu_s=row.attained_gpu_s,  # added to when an attempt ends: before this one
            stopping=row.status is AttemptStatus.STOPPING,
        )
        for row in rows
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
