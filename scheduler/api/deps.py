"""Request dependencies: the server's Runtime, the authenticated principal and its role.

``Auth`` accepts any valid token; ``People``, ``Staff``, ``Admin`` and ``Syncer`` also
require a role (403 otherwise; docs/security.md has the table). The principal is kept
on ``request.state`` for the audit log.

An agent's token is verified on its first sync and then kept (``AgentTokens``), not
looked up on each of its syncs (every few seconds from every node): each server looks
up the tokens revoked lately about once a second, so a revocation takes effect within
about a second everywhere; an expiry is checked on every sync, and a kept token is
verified afresh every ``KEEP_S``. A person's token is checked on every request, so a
revocation or a role change takes effect at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from scheduler.domain.auth import PEOPLE, STAFF, Role
from scheduler.domain.errors import Forbidden
from scheduler.runtime import Runtime, kept_for
from scheduler.services.bootstrap import Principal, authenticate, bearer_token
from scheduler.store import tokens as store_tokens
from scheduler.store.models import utcnow


async def runtime(request: Request) -> Runtime:
    """A coroutine, as every dependency here that does no I/O: FastAPI runs a plain
    function in its thread pool, one thread hop per request for a lookup."""
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


class AgentTokens:
    """The agent tokens one server verified, by digest, and the watch on revocations."""

    RECHECK_S = 1.0  # how often the tokens revoked lately are looked up
    KEEP_S = 300.0  # a kept token is verified afresh after this long
    SLACK_S = 60.0  # clocks of servers sharing a database may differ this much
    MAX = 100_000

    def __init__(self) -> None:
        self.kept: dict[str, tuple[float, datetime | None, Principal]] = {}
        self.checked_at = utcnow()  # revocations before this were seen by any kept token
        self.checked_mono = time.monotonic()
        self.checking = threading.Lock()

    def get(self, key: str) -> Principal | None:
        entry = self.kept.get(key)
        if entry is None:
            return None
        verified, expires_at, who = entry
        if time.monotonic() - verified > self.KEEP_S or (expires_at and expires_at <= utcnow()):
            self.kept.pop(key, None)
            return None
        return who

    def keep(self, key: str, expires_at: datetime | None, who: Principal) -> None:
        if len(self.kept) >= self.MAX:
            self.kept.clear()
        self.kept[key] = (time.monotonic(), expires_at, who)

    def due(self) -> bool:
        return time.monotonic() - self.checked_mono >= self.RECHECK_S

    def recheck(self, rt: Runtime) -> None:
        """Forget the kept tokens revoked since the last look (one query; one at a time)."""
        if not self.checking.acquire(blocking=False):
            return  # another request is looking: this one goes on with what is kept
        try:
            if not self.due():
                return
            started = utcnow()
            since = self.checked_at - timedelta(seconds=self.SLACK_S)
            with rt.db.read() as session:
                revoked = store_tokens.revoked_since(session, since)
            for key in revoked:
                self.kept.pop(key, None)
            self.checked_at, self.checked_mono = started, time.monotonic()
        finally:
            self.checking.release()


_agent_tokens: dict[int, AgentTokens] = {}  # id(runtime) -> its kept agent tokens


def _agent_tokens_of(rt: Runtime) -> AgentTokens:
    return kept_for(_agent_tokens, rt, AgentTokens)


async def principal(
    request: Request, rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    kept = _agent_tokens_of(rt)
    key = store_tokens.digest(bearer_token(authorization) or "")  # what revoked_since names
    who = kept.get(key)
    if who is not None and kept.due():
        await run_in_threadpool(kept.recheck, rt)
        who = kept.get(key)
    if who is None:
        fresh = await run_in_threadpool(authenticate, rt, authorization)
        if fresh.role == Role.AGENT:
            kept.keep(key, fresh.expires_at, fresh)
        who = fresh
    request.state.principal = who
    return who


Auth = Annotated[Principal, Depends(principal)]


def allow(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets only ``roles`` through."""
    allowed = frozenset(roles)

    async def check(who: Auth) -> Principal:
        if who.role not in allowed:
            names = ", ".join(sorted(allowed))
            raise Forbidden(f"the {who.role} role may not do this (allowed: {names})")
        return who

    return check


People = Annotated[Principal, Depends(allow(*PEOPLE))]  # not an agent
Staff = Annotated[Principal, Depends(allow(*STAFF))]
Admin = Annotated[Principal, Depends(allow(Role.ADMIN))]
Syncer = Annotated[Principal, Depends(allow(Role.ADMIN, Role.AGENT))]
