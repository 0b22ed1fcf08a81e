"""API tokens, kept as SHA-256 digests only (a token is 32 random bytes: no salt needed)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.store.models import TokenRow

TOKEN_PREFIX = "crl_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(session: Session, name: str, role: str, now: datetime) -> str:
    """Store a new token's digest and return the token (shown once, never stored)."""
    token = new_token()
    session.add(TokenRow(name=name, digest=digest(token), role=role, created_at=now))
    session.flush()
    return token


def has_tokens(session: Session) -> bool:
    return session.scalars(select(TokenRow.id).limit(1)).first() is not None


def verify(session: Session, token: str, now: datetime) -> TokenRow | None:
    row = session.scalars(select(TokenRow).where(TokenRow.digest == digest(token))).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return row
