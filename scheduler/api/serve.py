"""Run a corral server: prepare the database, record where it listens, serve HTTP."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import multiprocessing
import os
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn

from scheduler.api.app import create_app, server_loops
from scheduler.api.workers import run_workers
from scheduler.leader import FOLLOWER, LEADER, lead, standing
from scheduler.paths import server_info_path, write_private
from scheduler.runtime import Runtime, ServerMetrics
from scheduler.services.bootstrap import prepare
from scheduler.settings import ServerSettings
from scheduler.store.db import Database

log = logging.getLogger("corral.server")
ROLE_SHOWN_EVERY_S = 0.2  # how often the loops worker shows the API workers its role


class _Server(uvicorn.Server):
    """uvicorn, but a stop signal also releases the agents' long polls at once."""

    def __init__(self, config: uvicorn.Config, rt: Runtime) -> None:
        super().__init__(config)
        self.rt = rt

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.rt.notifier.close()
        super().handle_exit(sig, frame)


def serve(settings: ServerSettings, *, announce: bool = True) -> None:
    """Blocks until SIGINT/SIGTERM; the loops stop with the server.

    With ``settings.workers`` above one (PostgreSQL only) this process prepares the
    database and the socket, then forks that many API servers onto the socket and one
    process for the scheduling cycle and loops (``api/workers.py``), and watches them."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.workers > 1:
        _serve_workers(settings, announce)
        return
    db = Database(settings.database_url)
    rt = Runtime(db=db, settings=settings)
    with standing(rt):  # SQLite: this server alone; PostgreSQL: an election among servers
        token_path = prepare(rt)
        sock = _listen(settings, db.backend, token_path if announce else None)
        _run(rt, sock)


def _serve_workers(settings: ServerSettings, announce: bool) -> None:
    """Prepare, bind, then fork ``settings.workers`` API workers and one loops worker."""
    db = Database(settings.database_url)
    if db.is_sqlite:
        db.dispose()
        raise ValueError("--workers needs PostgreSQL: SQLite supports one server process")
    try:
        token_path = prepare(Runtime(db=db, settings=settings))
    finally:
        db.dispose()  # the workers open their own connections
    sock = _listen(settings, db.backend, token_path if announce else None)
    count = settings.workers
    shared = ServerMetrics.share(count + 1)  # any worker's /metrics: the whole server
    leads = multiprocessing.Value("b", 0, lock=False)  # the loops worker leads now

    def work(slot: int) -> None:
        metrics = ServerMetrics(shared, slot)
        rt = Runtime(db=Database(settings.database_url), settings=settings, metrics=metrics)
        with standing(rt):
            if slot == count:
                _lead_apart(rt, leads)
                return
            rt.loops_role = lambda: LEADER if leads.value else FOLLOWER
            _run(rt, sock, loops=False)

    try:
        run_workers(count + 1, work)
    finally:
        sock.close()


def _lead_apart(rt: Runtime, leads: Any) -> None:
    """The loops worker: no HTTP; the leader election and, while elected, the loops.
    The API workers wake its cycle, and it their agents' long polls, through the
    database (``WakeChannel``), as separate servers do."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rt.notifier.bind(loop)
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        task = asyncio.create_task(lead(rt, server_loops(rt), stopping))
        while not task.done():
            leads.value = rt.role == LEADER
            await asyncio.wait([task], timeout=ROLE_SHOWN_EVERY_S)
        leads.value = False
        await task

    freeze_heap()
    try:
        asyncio.run(main())
    finally:
        rt.db.dispose()


def freeze_heap() -> None:
    """Leave what is alive once the server is built (modules, the app, the policy) out
    of the garbage collector's full passes, which then scan only what serving makes.
    A full pass stops every thread of the process, the event loop included: over the
    whole heap it took 80-250 ms on a server under a thousand agents, a third of that
    after this."""
    gc.collect()
    gc.freeze()


def _listen(settings: ServerSettings, backend: str, token_path: object | None) -> socket.socket:
    """Bind the server's socket and record its address (the CLI finds it there)."""
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    scheme = "https" if settings.tls_cert else "http"
    url = f"{scheme}://{'127.0.0.1' if settings.host in ('0.0.0.0', '') else host}:{port}"
    info = {"url": url, "pid": os.getpid(), "database": backend}
    write_private(server_info_path(settings.data_dir), json.dumps(info) + "\n")
    if token_path is not None:
        workers = f", {settings.workers} workers" if settings.workers > 1 else ""
        print(
            f"corral server listening on {url} ({backend}{workers}); admin token: {token_path}",
            flush=True,
        )
    return sock


def _run(rt: Runtime, sock: socket.socket, *, loops: bool = True) -> None:
    settings = rt.settings
    config = uvicorn.Config(
        create_app(rt, run_loops_in_app=loops),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        # longer than any pause between one agent's syncs, so an idle connection is
        # not closed under a request about to be sent on it
        timeout_keep_alive=30,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )
    freeze_heap()
    try:
        _Server(config, rt).run(sockets=[sock])
    finally:
        rt.db.dispose()
