"""PostgreSQL's pool pings a connection before use only when it sat idle.

A connection cut while idle in the pool (here: its backend terminated, as a restarted
PostgreSQL does to all of them) is replaced before the next transaction uses it; a
connection in steady use is not pinged, which saves a round trip per transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from scheduler.domain.errors import Unavailable
from scheduler.store import db as db_module
from scheduler.store.db import Database
from tests.conftest import fresh_database_url


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    urls = fresh_database_url(request, tmp_path / "unused.db", upgraded=True)
    database = Database(next(urls))
    try:
        yield database
    finally:
        database.dispose()
        urls.close()  # drops the database


@pytest.fixture
def pings(pg: Database, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ping the pool sends, recorded."""
    seen: list[Any] = []
    real = pg.engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        seen.append(dbapi_conn)
        return real(dbapi_conn)

    monkeypatch.setattr(pg.engine.dialect, "do_ping", counted)
    return seen


def _backend_pid(database: Database) -> int:
    with database.read() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(database: Database, pid: int) -> None:
    """End a backend from another connection, as a PostgreSQL restart would."""
    other = Database(database.url)
    try:
        with other.write() as session:
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()


def test_a_connection_in_steady_use_is_not_pinged(pg: Database, pings: list[Any]) -> None:
    first = _backend_pid(pg)
    for _ in range(5):
        assert _backend_pid(pg) == first  # the same pooled connection each time
    assert pings == []


def test_an_idle_connection_cut_meanwhile_is_replaced_before_use(
    pg: Database, pings: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend_pid(pg)
    _terminate(pg, first)
    monkeypatch.setattr(db_module, "PING_IDLE_S", 0.0)  # as if it had sat idle a while
    second = _backend_pid(pg)  # no error: the ping found it dead and the pool replaced it
    assert second != first
    assert len(pings) == 1


def test_a_connection_cut_while_in_steady_use_fails_once_as_unavailable(pg: Database) -> None:
    first = _backend_pid(pg)
    _terminate(pg, first)
    with pytest.raises(Unavailable):
        _backend_pid(pg)
    assert _backend_pid(pg) != first  # the pool dropped it: the next one is new
