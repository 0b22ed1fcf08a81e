"""Queues: the fair-share units. ``default`` always exists."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.domain.errors import Conflict, NotFound
from scheduler.domain.spec import QueuePatch, QueueSpec
from scheduler.domain.status import LIVE, JobStatus
from scheduler.domain.views import QueueInfo
from scheduler.store.models import AllocationRow, AttemptRow, JobRow, QueueRow

DEFAULT_QUEUE = "default"


def ensure_default(session: Session, now: datetime) -> None:
    if session.scalars(select(QueueRow).where(QueueRow.name == DEFAULT_QUEUE)).first() is None:
        session.add(QueueRow(name=DEFAULT_QUEUE, weight=1.0, guaranteed_gpus=0, created_at=now))


def get_queue(session: Session, name: str) -> QueueRow:
    row = session.scalars(select(QueueRow).where(QueueRow.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no queue {name!r}", field="name")
    return row


def create_queue(session: Session, spec: QueueSpec, now: datetime) -> QueueRow:
    if session.scalars(select(QueueRow).where(QueueRow.name == spec.name)).first() is not None:
        raise Conflict(f"queue {spec.name!r} exists already", field="name")
    row = QueueRow(created_at=now, **spec.model_dump())
    session.add(row)
    session.flush()
    return row


def update_queue(session: Session, name: str, patch: QueuePatch) -> QueueRow:
    row = get_queue(session, name)
    changes = patch.model_dump(exclude_unset=True)
    merged = QueueSpec.model_validate(
        {
            "name": row.name,
            "weight": row.weight,
            "guaranteed_gpus": row.guaranteed_gpus,
            "borrow_limit_gpus": row.borrow_limit_gpus,
            "max_gpus": row.max_gpus,
            **changes,
        }
    )  # re-validates the whole queue (e.g. max_gpus >= guaranteed_gpus)
    for key, value in merged.model_dump(exclude={"name"}).items():
        setattr(row, key, value)
    return row


def queue_infos(session: Session, names: list[str] | None = None) -> list[QueueInfo]:
    stmt = select(QueueRow).order_by(QueueRow.name)
    if names is not None:
        stmt = stmt.where(QueueRow.name.in_(names))
    queues = list(session.scalars(stmt))
    counts: dict[tuple[int, JobStatus], int] = {
        (q, s): n
        for q, s, n in session.execute(
            select(JobRow.queue_id, JobRow.status, func.count())
            .where(JobRow.status.in_([JobStatus.PENDING, *LIVE]))
            .group_by(JobRow.queue_id, JobRow.status)
        ).all()
    }
    gpus = dict(
        session.execute(
            select(JobRow.queue_id, func.count())
            .select_from(AllocationRow)
            .join(AttemptRow, AttemptRow.id == AllocationRow.attempt_id)
            .join(JobRow, JobRow.id == AttemptRow.job_id)
            .where(AllocationRow.released_at.is_(None))
            .group_by(JobRow.queue_id)
        ).all()
    )
    return [
        QueueInfo(
            name=q.name,
            weight=q.weight,
            guaranteed_gpus=q.guaranteed_gpus,
            borrow_limit_gpus=q.borrow_limit_gpus,
            max_gpus=q.max_gpus,
            pending=counts.get((q.id, JobStatus.PENDING), 0),
            running=sum(counts.get((q.id, s), 0) for s in LIVE),
            allocated_gpus=gpus.get(q.id, 0),
        )
        for q in queues
    ]
