"""Queues: the fair-share units. ``default`` always exists.

Invariants this module keeps (the API's only door to queue rows):
- nesting is one level: a queue's parent exists and has no parent itself, and a queue
  that has children (an org) does not get a parent;
- an org holds no jobs: a queue with pending or live jobs does not become a parent,
  and ``assert_takes_jobs`` refuses a submission to a queue with children;
- a queue has at most one quota per GPU type (also a unique constraint).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.domain.errors import Conflict, Invalid, NotFound
from scheduler.domain.spec import QueuePatch, QueueSpec, TypeQuotaSpec
from scheduler.domain.status import LIVE, JobStatus
from scheduler.domain.usage import HOUR_S, decayed_usage
from scheduler.domain.views import QueueInfo, TypeQuotaView
from scheduler.store.models import AllocationRow, AttemptRow, JobRow, QueueRow, QueueTypeQuotaRow

DEFAULT_QUEUE = "default"


def ensure_default(session: Session, now: datetime) -> None:
    if session.scalars(select(QueueRow).where(QueueRow.name == DEFAULT_QUEUE)).first() is None:
        session.add(
            QueueRow(
                name=DEFAULT_QUEUE,
                weight=1.0,
                guaranteed_gpus=0,
                created_at=now,
                usage_updated_at=now,
            )
        )


def get_queue(session: Session, name: str, *, for_update: bool = False) -> QueueRow:
    stmt = select(QueueRow).where(QueueRow.name == name)
    row = session.scalars(stmt.with_for_update() if for_update else stmt).one_or_none()
    if row is None:
        raise NotFound(f"no queue {name!r}", field="name")
    return row


def children_of(session: Session, queue: QueueRow) -> list[str]:
    stmt = select(QueueRow.name).where(QueueRow.parent_id == queue.id).order_by(QueueRow.name)
    return list(session.scalars(stmt))


def assert_takes_jobs(session: Session, queue: QueueRow) -> None:
    """Raise Invalid (field ``queue``) when ``queue`` is an org: jobs go to its children."""
    children = children_of(session, queue)
    if children:
        raise Invalid(
            f"queue {queue.name!r} is an org and takes no jobs; "
            f"submit to one of its queues: {', '.join(children)}",
            field="queue",
        )


def create_queue(session: Session, spec: QueueSpec, now: datetime) -> QueueRow:
    if session.scalars(select(QueueRow).where(QueueRow.name == spec.name)).first() is not None:
        raise Conflict(f"queue {spec.name!r} exists already", field="name")
    parent = _parent_for(session, spec.parent, None)
    row = QueueRow(
        created_at=now,
        usage_updated_at=now,
        parent_id=parent.id if parent else None,
        type_quotas=_quota_rows(spec.type_quotas),
        **spec.model_dump(exclude={"parent", "type_quotas"}),
    )
    session.add(row)
    session.flush()
    return row


def update_queue(session: Session, name: str, patch: QueuePatch) -> QueueRow:
    row = get_queue(session, name, for_update=True)  # see _parent_for
    changes = patch.model_dump(exclude_unset=True)
    if changes.get("type_quotas", ()) is None:
        changes["type_quotas"] = []  # null clears them
    current = spec_of(session, row)
    # re-validates the whole queue (e.g. max_gpus >= guaranteed_gpus)
    merged = QueueSpec.model_validate({**current.model_dump(), **changes})
    if "parent" in changes and merged.parent != current.parent:
        parent = _parent_for(session, merged.parent, row)
        row.parent_id = parent.id if parent else None
    if "type_quotas" in changes:
        row.type_quotas.clear()
        session.flush()  # the old rows go first: the new ones would hit the unique constraint
        row.type_quotas.extend(_quota_rows(merged.type_quotas))
    for key, value in merged.model_dump(exclude={"name", "parent", "type_quotas"}).items():
        setattr(row, key, value)
    return row


def spec_of(session: Session, row: QueueRow) -> QueueSpec:
    parent = session.get(QueueRow, row.parent_id) if row.parent_id is not None else None
    return QueueSpec(
        name=row.name,
        weight=row.weight,
        guaranteed_gpus=row.guaranteed_gpus,
        borrow_limit_gpus=row.borrow_limit_gpus,
        max_gpus=row.max_gpus,
        parent=parent.name if parent else None,
        idle_action=row.idle_action,
        type_quotas=[
            TypeQuotaSpec(
                gpu_type=q.gpu_type, guaranteed_gpus=q.guaranteed_gpus, max_gpus=q.max_gpus
            )
            for q in row.type_quotas
        ],
    )


def _quota_rows(quotas: list[TypeQuotaSpec]) -> list[QueueTypeQuotaRow]:
    return [
        QueueTypeQuotaRow(
            gpu_type=q.gpu_type, guaranteed_gpus=q.guaranteed_gpus, max_gpus=q.max_gpus
        )
        for q in quotas
    ]


def _parent_for(session: Session, name: str | None, child: QueueRow | None) -> QueueRow | None:
    """The row of org ``name`` for ``child`` (None: a new queue), checking the nesting rules.

    Row locks keep the rules under concurrent writers on PostgreSQL (SQLite runs one
    writer at a time): the parent is locked here, the queue being changed by
    ``update_queue``, and a submission share-locks its queue (``store.jobs.insert_job``),
    so a queue cannot get a child and a job, or a child and a parent, at the same time.
    """
    if name is None:
        return None
    stmt = select(QueueRow).where(QueueRow.name == name).with_for_update()
    parent = session.scalars(stmt).one_or_none()
    if parent is None:
        raise Invalid(f"parent queue {name!r} does not exist", field="parent")
    if parent.parent_id is not None:
        raise Invalid(
            f"queue {name!r} has a parent itself; orgs nest one level only", field="parent"
        )
    if child is not None and children_of(session, child):
        raise Invalid(
            f"queue {child.name!r} is an org (it has queues under it) and cannot get a parent",
            field="parent",
        )
    jobs = _open_jobs(session, parent.id)
    if jobs:
        raise Invalid(
            f"queue {name!r} has {jobs} pending or running job(s); an org holds no jobs",
            field="parent",
        )
    return parent


def _open_jobs(session: Session, queue_id: int) -> int:
    stmt = select(func.count()).where(
        JobRow.queue_id == queue_id, JobRow.status.in_([JobStatus.PENDING, *LIVE])
    )
    return int(session.scalar(stmt) or 0)


def held_gpus_by_queue(session: Session) -> dict[int, int]:
    """queue id -> GPUs its jobs' live allocations hold (an org's own jobs only)."""
    stmt = (
        select(JobRow.queue_id, func.count())
        .select_from(AllocationRow)
        .join(AttemptRow, AttemptRow.id == AllocationRow.attempt_id)
        .join(JobRow, JobRow.id == AttemptRow.job_id)
        .where(AllocationRow.released_at.is_(None))
        .group_by(JobRow.queue_id)
    )
    return {queue_id: int(n) for queue_id, n in session.execute(stmt).all()}


def with_children(queues: list[QueueRow], per_queue: Mapping[int, int]) -> dict[int, int]:
    """``per_queue`` with each org's children's figures added to its own."""
    total = dict(per_queue)
    for queue in queues:
        if queue.parent_id is not None:
            total[queue.parent_id] = total.get(queue.parent_id, 0) + per_queue.get(queue.id, 0)
    return total


def queue_infos(
    session: Session,
    names: list[str] | None = None,
    *,
    fair_shares: Mapping[str, float] | None = None,
    now: datetime | None = None,
    half_life_s: float | None = None,
) -> list[QueueInfo]:
    """Views of the queues (all, or these names), an org's counts summing its children's.

    ``fair_shares`` come from the policy (the store does not compute them). With ``now``
    and ``half_life_s`` the stored usage is carried forward to ``now`` the way the usage
    loop would, else it is shown as last stored.
    """
    queues = list(session.scalars(select(QueueRow).order_by(QueueRow.name)))
    by_id = {q.id: q for q in queues}
    counts = _job_counts(session)
    pending = with_children(
        queues, {q: n for (q, s), n in counts.items() if s is JobStatus.PENDING}
    )
    running = with_children(queues, {q: n for (q, s), n in counts.items() if s in LIVE})
    held = with_children(queues, held_gpus_by_queue(session))
    shown = [q for q in queues if names is None or q.name in names]
    return [
        QueueInfo(
            name=q.name,
            weight=q.weight,
            guaranteed_gpus=q.guaranteed_gpus,
            borrow_limit_gpus=q.borrow_limit_gpus,
            max_gpus=q.max_gpus,
            parent=by_id[q.parent_id].name if q.parent_id in by_id else None,
            type_quotas=[
                TypeQuotaView(
                    gpu_type=t.gpu_type, guaranteed_gpus=t.guaranteed_gpus, max_gpus=t.max_gpus
                )
                for t in q.type_quotas
            ],
            pending=pending.get(q.id, 0),
            running=running.get(q.id, 0),
            allocated_gpus=held.get(q.id, 0),
            fair_share_gpus=(fair_shares or {}).get(q.name, 0.0),
            borrowed_gpus=max(0, held.get(q.id, 0) - q.guaranteed_gpus),
            usage_gpu_hours=_usage_now(q, held.get(q.id, 0), now, half_life_s) / HOUR_S,
            idle_action=q.idle_action,
        )
        for q in shown
    ]


def _job_counts(session: Session) -> dict[tuple[int, JobStatus], int]:
    stmt = (
        select(JobRow.queue_id, JobRow.status, func.count())
        .where(JobRow.status.in_([JobStatus.PENDING, *LIVE]))
        .group_by(JobRow.queue_id, JobRow.status)
    )
    return {(q, s): int(n) for q, s, n in session.execute(stmt).all()}


def _usage_now(
    queue: QueueRow, held: int, now: datetime | None, half_life_s: float | None
) -> float:
    if now is None or half_life_s is None or queue.usage_updated_at is None:
        return queue.usage_gpu_s
    elapsed_s = max(0.0, (now - queue.usage_updated_at).total_seconds())
    return decayed_usage(queue.usage_gpu_s, elapsed_s, half_life_s, held * elapsed_s)
