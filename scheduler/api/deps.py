"""Request dependencies: the server's Runtime and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from scheduler.runtime import Runtime
from scheduler.services.bootstrap import Principal, authenticate


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]


def principal(rt: RuntimeDep, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return authenticate(rt, authorization)


Auth = Annotated[Principal, Depends(principal)]
