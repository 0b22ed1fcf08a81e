"""Server start-up and authentication: schema upgrade, the default queue, the admin token."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from scheduler.domain.errors import Unauthorized
from scheduler.paths import admin_token_path, read_admin_token, write_private
from scheduler.runtime import Runtime
from scheduler.store import tokens, users
from scheduler.store.db import upgrade
from scheduler.store.models import utcnow
from scheduler.store.queues import ensure_default

log = logging.getLogger("corral.server")


@dataclass(frozen=True)
class Principal:
    """Who a valid token speaks for: a user (its name and role), or a node's agent."""

    name: str
    role: str
    queues: frozenset[str] = frozenset()  # a user's memberships: where it may submit
    node: str | None = None  # an agent token's node: the only one it may sync as
    expires_at: datetime | None = None  # when the token stops working (None: never)


def prepare(rt: Runtime) -> Path:
    """Upgrade the schema, make sure ``default`` exists and an admin token is saved.

    Returns the path of the admin token file. A token is only ever created when the
    file is missing or its token no longer verifies (the database was replaced).
    """
    upgrade(rt.db)
    path = admin_token_path(rt.settings.data_dir)
    with rt.db.write() as session:
        ensure_default(session, utcnow())
        saved = read_admin_token(rt.settings.data_dir)
        if saved is None or tokens.verify(session, saved, utcnow()) is None:
            name = f"admin-{utcnow().strftime('%Y%m%d%H%M%S%f')}"
            admin = users.ensure_admin(session, utcnow())
            token = tokens.create_token(session, name, "admin", utcnow(), user_id=admin.id)
            write_private(path, token + "\n")
            log.info("created an admin token; saved to %s (mode 600)", path)
    return path


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, None without one."""
    if not header or not header.lower().startswith("bearer "):
        return None
    return header[7:].strip()


def authenticate(rt: Runtime, header: str | None) -> Principal:
    token = bearer_token(header)
    if token is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer TOKEN)")
    with rt.db.read() as session:
        held = tokens.holder(session, token, utcnow())
        if held is None:
            raise Unauthorized("unknown, expired or revoked token")
        queues = users.queues_of(session, held.user_id) if held.user_id is not None else []
    return Principal(
        name=held.name,
        role=held.role,
        queues=frozenset(queues),
        node=held.node_name,
        expires_at=held.expires_at,
    )
