"""The engine, sessions and schema migrations.

SQLite (the embedded default) runs in WAL mode with foreign keys on and
``synchronous=FULL``, so a commit survives a crash of the machine, and write
transactions begin ``IMMEDIATE`` so two writers queue instead of failing to upgrade
a read lock; inside one process they queue on a lock first, which wakes the next
writer at once where SQLite's own busy handler would sleep. PostgreSQL
(``postgresql+psycopg://``) is used as it is, with a pool whose connections are
pinged before use only when they sat idle (``_ping_when_idle``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

import migrations
from scheduler.domain.errors import Unavailable

SQLITE_BUSY_TIMEOUT_MS = 30_000
PING_IDLE_S = 1.0  # a pooled PostgreSQL connection idle this long is pinged before use


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'corral.db'}"


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only if it sat in the pool ``PING_IDLE_S``.

    A ping per checkout (``pool_pre_ping``) is one more round trip for every transaction,
    and a busy server's connections come back to the pool milliseconds before their
    next use. One that sat idle may have been cut (a restarted PostgreSQL) and is
    replaced here; one in steady use that was cut fails its statement, which answers
    503 as during the outage itself, and SQLAlchemy then drops every pooled connection
    as old as it."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < PING_IDLE_S:
            return  # new, or in steady use
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool replaces it (and retries the checkout)
            raise DisconnectionError(str(exc)) from exc
        if not alive:
            raise DisconnectionError("the connection did not answer a ping")


@contextmanager
def _unavailable_as_503() -> Iterator[None]:
    """A database that cannot be reached (or is locked past the timeout) is Unavailable."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        first = str(exc.orig or exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise Unavailable(f"the database is unavailable: {first}") from exc


class Database:
    """Owns the engines and hands out short transactions.

    ``write()`` and ``read()`` are context managers yielding a Session inside one
    transaction, committed on a clean exit and rolled back on an exception. No
    network call may happen inside either.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"check_same_thread": False})
            _configure_sqlite(self.engine, immediate=True)
            self.read_engine = create_engine(url, connect_args={"check_same_thread": False})
            _configure_sqlite(self.read_engine, immediate=False)
        else:
            self.engine = create_engine(url, pool_size=10, max_overflow=20)
            _ping_when_idle(self.engine)
            # Reads run in autocommit, from the same pool: at READ COMMITTED each statement
            # sees its own snapshot inside a transaction too, so a BEGIN and a COMMIT
            # would only add two round trips (a quick agent sync is two statements)
            self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._writers: AbstractContextManager[object] = (
            threading.Lock() if self.is_sqlite else nullcontext()
        )
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return "sqlite" if self.is_sqlite else make_url(self.url).get_backend_name()

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file (None: PostgreSQL, or SQLite in memory)."""
        name = make_url(self.url).database if self.is_sqlite else None
        return Path(name).resolve() if name and name != ":memory:" else None

    @contextmanager
    def write(self) -> Iterator[Session]:
        # SQLite has one writer at a time; a second BEGIN IMMEDIATE would poll the lock
        # with sleeps of up to 100 ms, so this process's writers queue here instead
        with self._writers, _unavailable_as_503(), self._write.begin() as session:
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with _unavailable_as_503(), self._read.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self.is_sqlite:
            self.read_engine.dispose()


def alembic_config(url: str) -> Config:
    script_dir = Path(migrations.__file__).parent
    config = Config()
    config.set_main_option("script_location", str(script_dir))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def _migrating(db: Database) -> Iterator[Connection]:
    """One transaction for a migration; on SQLite with foreign keys off until it ends.

    SQLite alters a table by rebuilding it (batch mode), and dropping the old copy of a
    table that others refer to fails with foreign keys on. So, as SQLite's ALTER TABLE
    procedure says, they are off during the migration and ``foreign_key_check`` must
    find nothing before the commit.
    """
    with db.engine.connect() as conn:
        raw = conn.connection.driver_connection if db.is_sqlite else None
        if raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")  # before BEGIN: a no-op inside one
        try:
            with conn.begin():
                yield conn
                if raw is not None:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
        finally:
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent; the server calls it on start)."""
    config = alembic_config(db.url)
    with _migrating(db) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(db: Database, revision: str) -> None:
    config = alembic_config(db.url)
    with _migrating(db) as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(db: Database) -> str | None:
    return ScriptDirectory.from_config(alembic_config(db.url)).get_current_head()
