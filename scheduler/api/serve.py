"""Run a corral server: prepare the database, record where it listens, serve HTTP."""

from __future__ import annotations

import json
import logging
import os
import socket
from types import FrameType

import uvicorn

from scheduler.api.app import create_app
from scheduler.leader import standing
from scheduler.paths import server_info_path, write_private
from scheduler.runtime import Runtime
from scheduler.services.bootstrap import prepare
from scheduler.settings import ServerSettings
from scheduler.store.db import Database

log = logging.getLogger("corral.server")


class _Server(uvicorn.Server):
    """uvicorn, but a stop signal also releases the agents' long polls at once."""

    def __init__(self, config: uvicorn.Config, rt: Runtime) -> None:
        super().__init__(config)
        self.rt = rt

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.rt.notifier.close()
        super().handle_exit(sig, frame)


def serve(settings: ServerSettings, *, announce: bool = True) -> None:
    """Blocks until SIGINT/SIGTERM; the loops stop with the server."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    rt = Runtime(db=db, settings=settings)
    with standing(rt):  # SQLite: this server alone; PostgreSQL: an election among servers
        _serve(rt, announce)


def _serve(rt: Runtime, announce: bool) -> None:
    settings, db = rt.settings, rt.db
    token_path = prepare(rt)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    scheme = "https" if settings.tls_cert else "http"
    url = f"{scheme}://{'127.0.0.1' if settings.host in ('0.0.0.0', '') else host}:{port}"
    info = {"url": url, "pid": os.getpid(), "database": db.backend}
    write_private(server_info_path(settings.data_dir), json.dumps(info) + "\n")
    if announce:
        print(
            f"corral server listening on {url} ({db.backend}); admin token: {token_path}",
            flush=True,
        )
    config = uvicorn.Config(
        create_app(rt),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        # longer than any pause between one agent's syncs, so an idle connection is
        # not closed under a request about to be sent on it
        timeout_keep_alive=30,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )
    try:
        _Server(config, rt).run(sockets=[sock])
    finally:
        db.dispose()
