"""Migrations: head matches the models (no drift), downgrade to base removes every
corral table, and upgrading again works."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from scheduler.store.db import Database, current_revision, downgrade, head_revision, upgrade
from scheduler.store.models import Base

CORRAL_TABLES = set(Base.metadata.tables)


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def _drift(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_check_downgrade_upgrade(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert current_revision(db) is None
        upgrade(db)
        assert current_revision(db) == head_revision(db)
        assert _tables(db) >= CORRAL_TABLES
        assert _drift(db) == []  # the migrations build exactly what the models declare

        upgrade(db)  # idempotent: the server runs it on every start
        assert current_revision(db) == head_revision(db)

        downgrade(db, "base")
        assert _tables(db) & CORRAL_TABLES == set()
        assert current_revision(db) is None

        upgrade(db)
        assert current_revision(db) == head_revision(db)
        assert _drift(db) == []
    finally:
        db.dispose()
