"""The one way a job's status changes: compare-and-set plus a job event.

``transition_job`` checks the edge against the transition table (an illegal edge is a
bug and raises), then runs ``UPDATE jobs SET status=:new ... WHERE id=:id AND
status=:expected``. A lost race (someone changed the status first) returns False and
writes nothing; a won one writes a ``JobEventRow`` in the same transaction.
``transition_jobs`` is the same for many jobs at once (one statement, one event per
job that moved), for the cycle's placements.

Both run as Core statements on the session's connection: no ORM flush and no
``fetch`` synchronisation per call. A ``JobRow`` the session holds gets the written
values (or, for a value computed in SQL, is refreshed when next read), so callers
see the job as it now is.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import ClauseElement

from scheduler.domain.status import JobStatus, check_transition
from scheduler.store.models import JobEventRow, JobRow

JOBS = cast(Table, JobRow.__table__)
EVENTS = cast(Table, JobEventRow.__table__)


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
    """Move job ``job_id`` from ``expected`` to ``new``, setting ``fields`` too.

    A field's value may be a SQL expression (``JobRow.retries_used + 1``)."""
    check_transition(expected, new)
    values = {"status": new, "updated_at": now, **fields}
    result = session.connection().execute(
        update(JOBS).where(JOBS.c.id == job_id, JOBS.c.status == expected).values(values)
    )
    if result.rowcount != 1:
        return False
    _sync_loaded(session, job_id, values)
    session.connection().execute(
        insert(EVENTS), [_status_event(job_id, expected, new, now, message)]
    )
    return True


def transition_jobs(
    session: Session,
    job_ids: Collection[int],
    expected: JobStatus,
    new: JobStatus,
    *,
    now: datetime,
    message: Callable[[int], str],
    **fields: Any,
) -> set[int]:
    """``transition_job`` for many jobs in one statement; returns the ids that moved.

    Each job is compared and set on its own (``WHERE id IN (...) AND status=:expected``
    with ``RETURNING id``): a job that changed meanwhile is left out, the others move,
    and each one that moved gets its own event (``message(job_id)``)."""
    check_transition(expected, new)
    if not job_ids:
        return set()
    values = {"status": new, "updated_at": now, **fields}
    stmt = (
        update(JOBS)
        .where(JOBS.c.id.in_(list(job_ids)), JOBS.c.status == expected)
        .values(values)
        .returning(JOBS.c.id)
    )
    moved = set(session.connection().execute(stmt).scalars())
    for job_id in moved:
        _sync_loaded(session, job_id, values)
    if moved:
        events = [_status_event(j, expected, new, now, message(j)) for j in sorted(moved)]
        session.connection().execute(insert(EVENTS), events)
    return moved


def _status_event(
    job_id: int, old: JobStatus, new: JobStatus, now: datetime, message: str
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "at": now,
        "kind": "status",
        "old_status": old,
        "new_status": new,
        "message": message,
    }


def _sync_loaded(session: Session, job_id: int, values: dict[str, Any]) -> None:
    """Give the session's copy of the job (if it holds one) what the UPDATE wrote."""
    job = session.identity_map.get(session.identity_key(JobRow, job_id))
    if job is None:
        return
    computed = [key for key, value in values.items() if isinstance(value, ClauseElement)]
    for key, value in values.items():
        if key not in computed:
            set_committed_value(job, key, value)
    if computed:
        session.expire(job, computed)


def record_event(session: Session, job_id: int, kind: str, message: str, now: datetime) -> None:
    """A job event that is not a status change (e.g. a stop was asked)."""
    session.connection().execute(
        insert(EVENTS), [{"job_id": job_id, "at": now, "kind": kind, "message": message}]
    )
