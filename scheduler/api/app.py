"""The FastAPI application and its lifespan: the server's loops run beside the API.

With SQLite one server process owns the database file; every loop runs in it. With
PostgreSQL every server serves the API and only the elected leader runs the loops
(``scheduler/leader.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from scheduler import __version__
from scheduler.api import (
    agent,
    audit,
    errors,
    history,
    jobs,
    metrics,
    nodes,
    queues,
    telemetry,
    tokens,
    ui,
    usage,
    users,
)
from scheduler.api.ratelimit import limiter_of
from scheduler.domain.views import Health
from scheduler.leader import lead
from scheduler.loops.base import Loop
from scheduler.loops.idle import idle_loop
from scheduler.loops.limits import limits_loop
from scheduler.loops.liveness import liveness_loop
from scheduler.loops.prune import prune_loop
from scheduler.loops.rollup import rollup_loop
from scheduler.loops.schedule import schedule_loop
from scheduler.loops.usage import usage_loop
from scheduler.runtime import Runtime

log = logging.getLogger("corral.server")


def server_loops(rt: Runtime) -> list[Loop]:
    """The duties the leading server runs beside (or, with workers, apart from) the API."""
    return [
        schedule_loop(rt),
        liveness_loop(rt),
        limits_loop(rt),
        usage_loop(rt),
        idle_loop(rt),
        rollup_loop(rt),
        prune_loop(rt),
    ]


def create_app(rt: Runtime, *, run_loops_in_app: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        rt.notifier.bind(asyncio.get_running_loop())
        stopping = asyncio.Event()
        task = None
        if run_loops_in_app:  # only the leader runs them
            task = asyncio.create_task(lead(rt, server_loops(rt), stopping))
        try:
            yield
        finally:
            stopping.set()
            if task is not None:
                await task

    app = FastAPI(
        title="corral",
        version=__version__,
        description="A data-center GPU job scheduler.",
        lifespan=lifespan,
    )
    app.state.runtime = rt
    app.state.submit_limiter = limiter_of(rt.settings.submit_rate)
    errors.install(app)
    for module in (jobs, queues, nodes, agent, usage, metrics, telemetry, history):
        app.include_router(module.router)
    for module in (users, tokens, audit):
        app.include_router(module.router)
    app.add_middleware(audit.AuditMiddleware, rt=rt)
    ui.install(app)

    @app.get("/healthz", response_model=Health, tags=["health"])
    def health() -> Health:
        role = rt.reported_role()
        return Health(status="ok", version=__version__, database=rt.db.backend, role=role)

    return app
