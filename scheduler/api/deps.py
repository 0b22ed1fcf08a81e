"""Request dependencies: the server's Runtime, the authenticated principal and its role.

``Auth`` accepts any valid token; ``People``, ``Staff``, ``Admin`` and ``Syncer`` also
require a role (403 otherwise; docs/security.md has the table). The principal is kept
on ``request.state`` for the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from scheduler.domain.auth import PEOPLE, STAFF, Role
from scheduler.domain.errors import Forbidden
from scheduler.runtime import Runtime
from scheduler.services.bootstrap import Principal, authenticate


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def principal(
    request: Request, rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    who = authenticate(rt, authorization)
    request.state.principal = who
    return who


Auth = Annotated[Principal, Depends(principal)]


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only ``roles`` through."""
    allowed = frozenset(roles)

    def check(who: Auth) -> Principal:
        if who.role not in allowed:
            names = ", ".join(sorted(allowed))
            raise Forbidden(f"the {who.role} role may not do this (allowed: {names})")
        return who

    return check


People = Annotated[Principal, Depends(allow(*PEOPLE))]  # not an agent
Staff = Annotated[Principal, Depends(allow(*STAFF))]
Admin = Annotated[Principal, Depends(allow(Role.ADMIN))]
Syncer = Annotated[Principal, Depends(allow(Role.ADMIN, Role.AGENT))]
