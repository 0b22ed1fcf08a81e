"""Shared fixtures: a database URL on each backend and an upgraded ``Database`` on it.

``database_url`` is parametrized over ``sqlite`` (a fresh file per test) and
``postgres`` (a fresh database per test on one server per session); ``upgraded_database_url``
likewise, with the schema at the head revision (a copy of a database upgraded once per
session), and ``db`` is a ``Database`` on it. The server is
``$CORRAL_TEST_POSTGRES_URL`` when set; otherwise a private throwaway cluster is
started from the PostgreSQL binaries (as the ``postgres`` user when running as root)
and stopped at the end of the session. Without either the postgres variants are
skipped, except under ``CI=true``, where they fail: CI never silently skips PostgreSQL.

Factories that put rows in these databases live in ``tests/factories.py``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from scheduler.store.db import Database, upgrade

POSTGRES_URL_ENV = "CORRAL_TEST_POSTGRES_URL"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_START_TIMEOUT_S = 60
_SHORT_TMP = "/tmp" if os.path.isdir("/tmp") else None


@dataclass(frozen=True)
class PostgresServer:
    """A reachable server (``url`` names its maintenance database), or why there is none."""

    url: str | None
    why_not: str = ""


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _pg_bin() -> Path | None:
    found = sorted(glob.glob(f"{PG_BIN_GLOB}/initdb"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Cluster:
    """A throwaway PostgreSQL cluster in a temp dir, on a free loopback port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.runner: list[str] = []
        self.owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:  # initdb refuses to run as root
            self.owner = pwd.getpwnam("postgres")  # KeyError: no postgres user
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root but runuser(1) is missing")
            self.runner = [runuser, "-u", "postgres", "--"]
        # under /tmp: short enough for the socket path, reachable by the postgres user
        self.dir = Path(tempfile.mkdtemp(prefix="corral-pg-", dir=_SHORT_TMP))
        if self.owner is not None:
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        self.data = self.dir / "data"
        self.port = 0

    def _run(self, *args: str) -> None:
        cmd = [*self.runner, str(self.bin_dir / args[0]), *args[1:]]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PG_START_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "corral", "--no-sync")
        log = str(self.dir / "server.log")
        for tries_left in reversed(range(3)):  # the free port may be taken before we bind it
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")
                break
            except RuntimeError:
                if not tries_left:
                    raise
        return f"postgresql+psycopg://corral@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; only started when a postgres test runs."""
    explicit = os.environ.get(POSTGRES_URL_ENV)
    if explicit:
        yield PostgresServer(explicit)
        return
    bin_dir = _pg_bin()
    if bin_dir is None:
        why = f"no PostgreSQL binaries ({PG_BIN_GLOB}/initdb) and no ${POSTGRES_URL_ENV}"
        yield PostgresServer(None, why)
        return
    try:
        cluster = _Cluster(bin_dir)
    except (KeyError, RuntimeError) as err:
        yield PostgresServer(None, f"cannot run initdb here: {err!r}")
        return
    try:
        url = cluster.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        cluster.stop()
        yield PostgresServer(None, f"could not start a private PostgreSQL: {err}")
        return
    try:
        yield PostgresServer(url)
    finally:
        cluster.stop()


_db_numbers = itertools.count(1)


def _fresh_postgres_database(
    server_url: str, template: str | None = None
) -> tuple[str, Callable[[], None]]:
    """CREATE a new database on the server, empty or a copy of ``template``; returns
    its URL and how to drop it."""
    name = f"corral_test_{os.getpid()}_{next(_db_numbers)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database on each backend."""
    yield from fresh_database_url(request, tmp_path / "corral.db")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def upgraded_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database on each backend, its schema at the head revision: a
    copy of one upgraded once per session (the migrations run on empty ones above)."""
    yield from fresh_database_url(request, tmp_path / "corral.db", upgraded=True)


def fresh_database_url(
    request: pytest.FixtureRequest, sqlite_file: Path, *, upgraded: bool = False
) -> Iterator[str]:
    """A fresh database on ``request.param``'s backend (``sqlite``: at ``sqlite_file``;
    ``postgres``: a new database on the session's server, dropped afterwards), empty or,
    with ``upgraded``, at the head revision."""
    if request.param == "sqlite":
        if upgraded:
            shutil.copyfile(request.getfixturevalue("_sqlite_at_head"), sqlite_file)
        yield f"sqlite:///{sqlite_file}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    if server.url is None:
        if _in_ci():
            pytest.fail(f"CI=true but PostgreSQL is unavailable: {server.why_not}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {server.why_not}")
    template = request.getfixturevalue("_postgres_at_head") if upgraded else None
    url, drop = _fresh_postgres_database(server.url, template)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def _sqlite_at_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file upgraded to the head revision, to copy."""
    path = tmp_path_factory.mktemp("template") / "corral.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()  # the last connection's close folds the WAL into the file
    return path


@pytest.fixture(scope="session")
def _postgres_at_head(postgres_server: PostgresServer) -> Iterator[str]:
    """The name of a PostgreSQL database upgraded to the head revision, to copy."""
    assert postgres_server.url is not None
    url, drop = _fresh_postgres_database(postgres_server.url)
    database = Database(url)
    upgrade(database)
    database.dispose()  # CREATE DATABASE ... TEMPLATE wants no one connected to it
    try:
        yield str(make_url(url).database)
    finally:
        drop()


@pytest.fixture
def db(upgraded_database_url: str) -> Iterator[Database]:
    """A ``Database`` on a fresh database at the head revision."""
    database = Database(upgraded_database_url)
    try:
        yield database
    finally:
        database.dispose()
