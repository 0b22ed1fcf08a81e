"""Migrations: head matches the models (no drift), downgrade to base removes every
corral table, and upgrading again works."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

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


def test_0002_upgrades_and_downgrades_a_database_with_rows(database_url: str) -> None:
    """Queues and jobs survive both ways; on SQLite ``queues`` is rebuilt (batch mode) while
    ``jobs`` refers to it, which only works with foreign keys off during the migration."""
    db = Database(database_url)
    now = "2026-01-01 12:00:00+00:00"
    try:
        upgrade(db, "0001")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO queues (id, name, weight, guaranteed_gpus, created_at)"
                    " VALUES (1, 'ml', 1.0, 4, :now), (2, 'vision', 2.0, 0, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO jobs (id, name, queue_id, status, priority, spec, gpus_requested,"
                    " submitted_at, updated_at, attempts_count, retries_used, attained_gpu_s,"
                    " spec_digest) VALUES (1, 'train', 2, 'pending', 0, '{}', 1, :now, :now,"
                    " 0, 0, 0.0, 'x')"
                ),
                {"now": now},
            )
        upgrade(db)
        with db.engine.begin() as conn:
            rows = conn.execute(text("SELECT name, usage_gpu_s, parent_id FROM queues ORDER BY id"))
            assert [tuple(r) for r in rows] == [("ml", 0.0, None), ("vision", 0.0, None)]
            conn.execute(text("UPDATE queues SET parent_id = 1 WHERE id = 2"))
            conn.execute(
                text(
                    "INSERT INTO queue_type_quotas (queue_id, gpu_type, guaranteed_gpus)"
                    " VALUES (2, 'L4', 1)"
                )
            )
            conn.execute(text("UPDATE jobs SET wait_position = 3 WHERE id = 1"))

        downgrade(db, "0001")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM queues")).scalar() == 2
            assert conn.execute(text("SELECT queue_id FROM jobs")).scalar() == 2
            columns = {c["name"] for c in inspect(conn).get_columns("queues")}
            assert "parent_id" not in columns and "usage_gpu_s" not in columns
        upgrade(db)
        assert _drift(db) == []
    finally:
        db.dispose()


def test_0003_and_0004_keep_attempts_and_nodes_both_ways(database_url: str) -> None:
    """The progress columns (0003) and the node's drain time (0004) come and go; the
    attempts and nodes they were added to keep their rows."""
    db = Database(database_url)
    now = "2026-01-01 12:00:00+00:00"
    try:
        upgrade(db, "0002")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO queues (id, name, weight, guaranteed_gpus, created_at,"
                    " usage_gpu_s) VALUES (1, 'default', 1.0, 0, :now, 0)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO jobs (id, name, queue_id, status, priority, spec, gpus_requested,"
                    " submitted_at, updated_at, attempts_count, retries_used, attained_gpu_s,"
                    " spec_digest) VALUES (1, 'train', 1, 'running', 0, '{}', 1, :now, :now,"
                    " 1, 0, 0.0, 'x')"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO attempts (id, job_id, number, status, created_at, message,"
                    " gpu_count) VALUES (1, 1, 1, 'running', :now, '', 1)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO nodes (id, name, hostname, state, drained, cpus,"
                    " memory_total_mib, agent_version, registered_at, last_seen_at)"
                    " VALUES (1, 'n1', 'n1.example', 'up', false, 8, 1024, '', :now, :now)"
                ),
                {"now": now},
            )
        upgrade(db)
        with db.engine.begin() as conn:
            row = conn.execute(text("SELECT step, resumed_from_step FROM attempts")).one()
            assert tuple(row) == (None, None)
            conn.execute(text("UPDATE attempts SET step = 9000000000, last_checkpoint_step = 8"))
            conn.execute(text("UPDATE nodes SET drain_changed_at = :now"), {"now": now})
            assert conn.execute(text("SELECT step FROM attempts")).scalar() == 9_000_000_000

        downgrade(db, "0002")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM attempts")).scalar() == 1
            assert conn.execute(text("SELECT name FROM nodes")).scalar() == "n1"
            assert "step" not in {c["name"] for c in inspect(conn).get_columns("attempts")}
            assert "drain_changed_at" not in {c["name"] for c in inspect(conn).get_columns("nodes")}
        upgrade(db)
        assert _drift(db) == []
    finally:
        db.dispose()
