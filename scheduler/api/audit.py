"""``GET /api/v1/audit`` (admins only): the state-changing calls, newest first.

The log is written by ``AuditMiddleware`` below, installed by ``api/app.py``."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduler.api.deps import Admin, RuntimeDep
from scheduler.api.usage import window_start
from scheduler.domain.auth import AuditList
from scheduler.domain.spec import Text
from scheduler.domain.views import ErrorResponse
from scheduler.runtime import Runtime
from scheduler.store.audit import list_events, record
from scheduler.store.models import utcnow

log = logging.getLogger("corral.audit")
router = APIRouter(
    prefix="/api/v1/audit",
    tags=["audit"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)


@router.get("", response_model=AuditList)
def audit(
    rt: RuntimeDep,
    _: Admin,
    since: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    user: Annotated[Text | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> AuditList:
    """``since``: a duration back from now (``7d``) or an ISO 8601 time; ``user``: a caller."""
    start = window_start(since, utcnow()) if since else None
    with rt.db.read() as session:
        return AuditList(events=list_events(session, since=start, who=user, limit=limit))


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SYNC_PATH = "/api/v1/agent/sync"


class AuditMiddleware:
    """Records every state-changing ``/api/`` call with its caller and answer.

    The row is written right after the reply, in its own transaction, for allowed and
    refused calls alike (a 401 has no caller). An agent's accepted sync is not
    recorded: it is the steady heartbeat, not a decision; a refused one is. A failure
    to write the row is logged and does not change the reply.
    """

    def __init__(self, app: ASGIApp, rt: Runtime) -> None:
        self.app = app
        self.rt = rt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITES
            or not str(scope["path"]).startswith("/api/")
        ):
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            if not (scope["path"] == SYNC_PATH and status < 400):
                await asyncio.to_thread(self._record, scope, status)

    def _record(self, scope: Scope, status: int) -> None:
        who = (scope.get("state") or {}).get("principal")
        params = scope.get("path_params") or {}
        target = " ".join(f"{key}={value}" for key, value in sorted(params.items())) or None
        try:
            with self.rt.db.write() as session:
                record(
                    session,
                    at=utcnow(),
                    who=getattr(who, "name", None),
                    role=getattr(who, "role", None),
                    method=str(scope["method"]),
                    path=str(scope["path"]),
                    target=target,
                    status=status,
                )
        except Exception:  # the reply is sent; a lost audit row must not become a 500
            log.exception("could not audit %s %s", scope["method"], scope["path"])
