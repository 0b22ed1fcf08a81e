"""The one way a job's status changes: compare-and-set plus a job event.

``transition_job`` checks the edge against the transition table (an illegal edge is a
bug and raises), then runs ``UPDATE jobs SET status=:new ... WHERE id=:id AND
status=:expected``. A lost race (someone changed the status first) returns False and
writes nothing; a won one writes a ``JobEventRow`` in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from scheduler.domain.status import JobStatus, check_transition
from scheduler.store.models import JobEventRow, JobRow


def transition_job(
    session: Session,
    job_id: int,
    expected: JobStatus,
    new: JobStatus,
    *,
    now: datetime,
    message: str = "",
    **fields: Any,
) -> bool:
    """Move job ``job_id`` from ``expected`` to ``new``, setting ``fields`` too."""
    check_transition(expected, new)
    result = session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status == expected)
        .values(status=new, updated_at=now, **fields)
        .execution_options(synchronize_session="fetch")
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(
        JobEventRow(
            job_id=job_id,
            at=now,
            kind="status",
            old_status=expected,
            new_status=new,
            message=message,
        )
    )
    return True


def record_event(session: Session, job_id: int, kind: str, message: str, now: datetime) -> None:
    """A job event that is not a status change (e.g. a stop was asked)."""
    session.add(JobEventRow(job_id=job_id, at=now, kind=kind, message=message))
