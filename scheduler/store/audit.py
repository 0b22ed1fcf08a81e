"""The audit log: one row per state-changing API call, allowed or refused.

Rows are only ever added (and read by admins); nothing in corral updates one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.domain.auth import AuditEventView
from scheduler.store.models import AuditEventRow

MAX_PATH = 500
MAX_TARGET = 200


def record(
    session: Session,
    *,
    at: datetime,
    who: str | None,
    role: str | None,
    method: str,
    path: str,
    target: str | None,
    status: int,
) -> None:
    session.add(
        AuditEventRow(
            at=at,
            who=who,
            role=role,
            method=method[:8],
            path=path[:MAX_PATH],
            target=target[:MAX_TARGET] if target else None,
            status=status,
        )
    )


def list_events(
    session: Session, *, since: datetime | None, who: str | None, limit: int
) -> list[AuditEventView]:
    """Newest first."""
    stmt = select(AuditEventRow).order_by(AuditEventRow.id.desc()).limit(limit)
    if since is not None:
        stmt = stmt.where(AuditEventRow.at >= since)
    if who is not None:
        stmt = stmt.where(AuditEventRow.who == who)
    return [
        AuditEventView(
            id=row.id,
            at=row.at,
            who=row.who,
            role=row.role,
            method=row.method,
            path=row.path,
            target=row.target,
            status=row.status,
        )
        for row in session.scalars(stmt)
    ]
