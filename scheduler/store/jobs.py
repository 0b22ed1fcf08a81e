"""Jobs: insert (idempotent by key), look up, list by page, and read their history."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.domain.errors import Conflict, Invalid, NotFound
from scheduler.domain.spec import JobSpec
from scheduler.domain.status import JobStatus
from scheduler.store.models import AttemptRow, JobEventRow, JobRow, QueueRow
from scheduler.store.queues import assert_takes_jobs
from scheduler.store.transitions import record_event


class DuplicateKey(Exception):
    """Another transaction inserted a job with the same idempotency key first."""


def spec_digest(spec: JobSpec) -> str:
    """A SHA-256 of the whole spec, secret values included: a retry that changes a
    secret is another spec, yet the digest shows nothing of the value."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def find_by_idempotency_key(session: Session, key: str, spec: JobSpec) -> JobRow | None:
    """The job an earlier submit with ``key`` created; a different spec is a conflict."""
    row = session.scalars(select(JobRow).where(JobRow.idempotency_key == key)).one_or_none()
    if row is not None and row.spec_digest != spec_digest(spec):
        raise Conflict(
            f"idempotency key {key!r} was already used for job {row.id} with another spec",
            field="idempotency_key",
        )
    return row


def insert_job(
    session: Session,
    spec: JobSpec,
    *,
    now: datetime,
    idempotency_key: str | None = None,
    submitted_by: str | None = None,
) -> JobRow:
    # share-locked: it cannot become an org while this job goes in (store.queues)
    stmt = select(QueueRow).where(QueueRow.name == spec.queue).with_for_update(read=True)
    queue = session.scalars(stmt).one_or_none()
    if queue is None:
        raise Invalid(f"unknown queue {spec.queue!r}", field="queue", code="unknown_queue")
    assert_takes_jobs(session, queue)
    row = JobRow(
        name=spec.display_name(),
        queue_id=queue.id,
        queue=queue,
        status=JobStatus.PENDING,
        priority=spec.priority,
        spec=spec.model_dump(mode="json"),
        gpus_requested=spec.resources.total_gpus,
        submitted_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
        spec_digest=spec_digest(spec),
        submitted_by=submitted_by,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        if idempotency_key is None:
            raise
        raise DuplicateKey(idempotency_key) from exc
    record_event(session, row.id, "submitted", f"submitted to queue {queue.name}", now)
    return row


def get_job(session: Session, job_id: int, *, for_update: bool = False) -> JobRow:
    stmt = select(JobRow).where(JobRow.id == job_id)
    if for_update:  # lock the job row only: FOR UPDATE may not reach the outer-joined queue
        stmt = stmt.with_for_update(of=JobRow)
    row = session.scalars(stmt).one_or_none()
    if row is None:
        raise NotFound(f"no job {job_id}", field="job_id")
    return row


def list_jobs(
    session: Session,
    *,
    statuses: Sequence[JobStatus] = (),
    queue: str | None = None,
    name: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
    array_id: int | None = None,
    submitted_by: str | None = None,
) -> tuple[list[JobRow], int | None]:
    """Newest first, one page; the second value is the ``before_id`` of the next page.

    Keyset paging on the primary key: a page costs the same with 100,000 finished jobs
    behind it as with none. Several statuses are read one index range each and merged
    here: with an IN list the database would read and sort every job of those statuses
    (a long pending queue) for one page."""

    def narrow(stmt: Select[Any]) -> Select[Any]:
        if array_id is not None:
            stmt = stmt.where(JobRow.array_id == array_id)
        if queue:
            stmt = stmt.join(QueueRow, JobRow.queue_id == QueueRow.id).where(QueueRow.name == queue)
        if name:
            stmt = stmt.where(JobRow.name == name)
        if submitted_by is not None:  # a user lists its own jobs only
            stmt = stmt.where(JobRow.submitted_by == submitted_by)
        if before_id is not None:
            stmt = stmt.where(JobRow.id < before_id)
        return stmt.order_by(JobRow.id.desc()).limit(limit + 1)

    if len(statuses) > 1:
        ids: list[int] = []
        for status in dict.fromkeys(statuses):
            ids += session.scalars(narrow(select(JobRow.id).where(JobRow.status == status)))
        newest = sorted(ids, reverse=True)[: limit + 1]
        stmt = select(JobRow).where(JobRow.id.in_(newest)).order_by(JobRow.id.desc())
    else:
        stmt = narrow(select(JobRow))
        if statuses:
            stmt = stmt.where(JobRow.status == statuses[0])
    rows = list(session.scalars(stmt).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def attempts_of(session: Session, job_id: int) -> list[AttemptRow]:
    stmt = select(AttemptRow).where(AttemptRow.job_id == job_id).order_by(AttemptRow.number)
    return list(session.scalars(stmt))


def latest_attempt(session: Session, job_id: int) -> AttemptRow | None:
    stmt = (
        select(AttemptRow)
        .where(AttemptRow.job_id == job_id)
        .order_by(AttemptRow.number.desc())
        .limit(1)
    )
    return session.scalars(stmt).one_or_none()


def events_of(session: Session, job_id: int) -> list[JobEventRow]:
    stmt = select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id)
    return list(session.scalars(stmt))
