"""Users and their queue memberships (the tokens they hold live in ``store/tokens.py``).

A user's tokens carry the user's role: changing the role rewrites them in the same
transaction, so a token never grants what its user no longer has.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from scheduler.domain.auth import UserView
from scheduler.domain.errors import Conflict, NotFound
from scheduler.store.models import JobRow, MembershipRow, QueueRow, TokenRow, UserRow

ADMIN_USER = "admin"


def get_user(session: Session, name: str) -> UserRow:
    row = session.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no user named {name!r}", field="name")
    return row


def ensure_admin(session: Session, now: datetime) -> UserRow:
    """The ``admin`` user, made on first need (the server's first start)."""
    row = session.scalars(select(UserRow).where(UserRow.name == ADMIN_USER)).one_or_none()
    if row is None:
        row = UserRow(name=ADMIN_USER, role="admin", created_at=now)
        session.add(row)
        session.flush()
    return row


def create_user(
    session: Session, name: str, role: str, queues: Sequence[str], now: datetime
) -> UserRow:
    if session.scalars(select(UserRow.id).where(UserRow.name == name)).first() is not None:
        raise Conflict(f"a user named {name!r} exists", field="name", code="exists")
    row = UserRow(name=name, role=role, created_at=now)
    session.add(row)
    session.flush()
    set_queues(session, row, queues)
    return row


def update_user(
    session: Session, name: str, role: str | None, queues: Sequence[str] | None
) -> UserRow:
    row = get_user(session, name)
    if role is not None and role != row.role:
        row.role = role
        session.execute(update(TokenRow).where(TokenRow.user_id == row.id).values(role=role))
    if queues is not None:
        set_queues(session, row, queues)
    session.flush()
    return row


def delete_user(session: Session, name: str) -> None:
    """The user goes, and with it its memberships and tokens (at once: they stop working)."""
    row = get_user(session, name)
    session.execute(delete(TokenRow).where(TokenRow.user_id == row.id))
    session.execute(delete(MembershipRow).where(MembershipRow.user_id == row.id))
    session.delete(row)
    session.flush()


def set_queues(session: Session, user: UserRow, names: Sequence[str]) -> None:
    """Make ``names`` the user's memberships; an unknown queue is a 404 naming it."""
    wanted = sorted(set(names))
    rows = session.execute(select(QueueRow.name, QueueRow.id).where(QueueRow.name.in_(wanted)))
    ids = {name: queue_id for name, queue_id in rows}
    missing = [name for name in wanted if name not in ids]
    if missing:
        raise NotFound(f"no queue named {missing[0]!r}", field="queues")
    session.execute(delete(MembershipRow).where(MembershipRow.user_id == user.id))
    session.add_all(MembershipRow(user_id=user.id, queue_id=ids[name]) for name in wanted)
    session.flush()


# Built once: every request of a person reads its memberships.
_QUEUES_OF = (
    select(QueueRow.name)
    .join(MembershipRow, MembershipRow.queue_id == QueueRow.id)
    .where(MembershipRow.user_id == bindparam("user_id"))
    .order_by(QueueRow.name)
)


def queues_of(session: Session, user_id: int) -> list[str]:
    return list(session.scalars(_QUEUES_OF, {"user_id": user_id}))


def user_view(session: Session, row: UserRow) -> UserView:
    return UserView(
        id=row.id,
        name=row.name,
        role=row.role,
        queues=queues_of(session, row.id),
        created_at=row.created_at,
    )


def list_users(session: Session) -> list[UserView]:
    rows = session.scalars(select(UserRow).order_by(UserRow.name))
    return [user_view(session, row) for row in rows]


def job_submitter(session: Session, job_id: int) -> tuple[bool, str | None]:
    """(whether the job exists, who submitted it)."""
    row = session.execute(select(JobRow.submitted_by).where(JobRow.id == job_id)).first()
    return (row is not None), (row[0] if row is not None else None)


def array_submitters(session: Session, array_id: int) -> set[str | None]:
    stmt = select(JobRow.submitted_by).where(JobRow.array_id == array_id).distinct()
    return set(session.scalars(stmt))
