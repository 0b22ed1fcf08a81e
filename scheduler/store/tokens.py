"""API tokens, kept as SHA-256 digests only (a token is 32 random bytes: no salt needed).

A token belongs to a user (and carries its role) or to one node's agent (role
``agent``, ``node_name`` set). Revocation and expiry are checked on every request
of a person, so a revoked token stops working at once. An agent's token, used every
few seconds by its node, is verified once and then watched: the server looks up the
tokens revoked lately about once a second (``revoked_since``; ``scheduler.api.deps``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from scheduler.domain.auth import TokenView
from scheduler.domain.errors import Conflict, NotFound
from scheduler.store.models import TokenRow, UserRow

TOKEN_PREFIX = "crl_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    session: Session,
    name: str,
    role: str,
    now: datetime,
    *,
    user_id: int | None = None,
    node_name: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Store a new token's digest and return the token (shown once, never stored)."""
    if session.scalars(select(TokenRow.id).where(TokenRow.name == name)).first() is not None:
        raise Conflict(f"a token named {name!r} exists", field="name", code="exists")
    token = new_token()
    session.add(
        TokenRow(
            name=name,
            digest=digest(token),
            role=role,
            created_at=now,
            user_id=user_id,
            node_name=node_name,
            expires_at=expires_at,
        )
    )
    session.flush()
    return token


def has_tokens(session: Session) -> bool:
    return session.scalars(select(TokenRow.id).limit(1)).first() is not None


@dataclass(frozen=True, slots=True)
class Holder:
    """What a valid token says of its bearer."""

    name: str  # its user's name, else the token's own name
    role: str
    user_id: int | None
    node_name: str | None  # an agent token's node
    expires_at: datetime | None


# Built once, so that its cache key is not worked out again on every request.
_HOLDER = (
    select(
        TokenRow.name,
        TokenRow.role,
        TokenRow.user_id,
        TokenRow.node_name,
        TokenRow.expires_at,
        TokenRow.revoked_at,
        UserRow.name.label("user_name"),
    )
    .outerjoin(UserRow, UserRow.id == TokenRow.user_id)
    .where(TokenRow.digest == bindparam("digest"))
)


def holder(session: Session, token: str, now: datetime) -> Holder | None:
    """The bearer of ``token`` in one read; None if unknown, revoked or expired."""
    row = session.execute(_HOLDER, {"digest": digest(token)}).one_or_none()
    if row is None or not _valid(row.revoked_at, row.expires_at, now):
        return None
    return Holder(row.user_name or row.name, row.role, row.user_id, row.node_name, row.expires_at)


def verify(session: Session, token: str, now: datetime) -> TokenRow | None:
    row = session.scalars(select(TokenRow).where(TokenRow.digest == digest(token))).one_or_none()
    if row is None or not _valid(row.revoked_at, row.expires_at, now):
        return None
    return row


def _valid(revoked_at: datetime | None, expires_at: datetime | None, now: datetime) -> bool:
    return revoked_at is None and (expires_at is None or expires_at > now)


def revoked_since(session: Session, since: datetime) -> set[str]:
    """The digests of the tokens revoked at or after ``since``."""
    stmt = select(TokenRow.digest).where(TokenRow.revoked_at >= since)
    return set(session.scalars(stmt))


def owner_name(session: Session, row: TokenRow) -> str:
    """Whom a token speaks for: its user's name, else the token's own name."""
    if row.user_id is None:
        return row.name
    name = session.scalars(select(UserRow.name).where(UserRow.id == row.user_id)).one_or_none()
    return name or row.name


def revoke(session: Session, token_id: int, now: datetime) -> TokenRow:
    row = session.get(TokenRow, token_id)
    if row is None:
        raise NotFound(f"no token {token_id}", field="token_id")
    if row.revoked_at is None:
        row.revoked_at = now
        session.flush()
    return row


def token_view(row: TokenRow, user: str | None) -> TokenView:
    return TokenView(
        id=row.id,
        name=row.name,
        role=row.role,
        user=user,
        node=row.node_name,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def list_tokens(session: Session, user: str | None = None) -> list[TokenView]:
    stmt = (
        select(TokenRow, UserRow.name)
        .outerjoin(UserRow, UserRow.id == TokenRow.user_id)
        .order_by(TokenRow.id)
    )
    if user is not None:
        stmt = stmt.where(UserRow.name == user)
    return [token_view(row, name) for row, name in session.execute(stmt)]
