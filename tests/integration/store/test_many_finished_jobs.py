"""With many finished jobs in the database, listing pages by key without losing or
repeating a job, and neither a page of ``corral jobs`` nor the cycle's snapshot scans the
jobs or attempts tables (SQLite's query plan names an index for each of their reads)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.orm import Session

from scheduler.domain.status import JobStatus
from scheduler.store import jobs as store_jobs
from scheduler.store.batch import insert_batch
from scheduler.store.db import Database
from scheduler.store.models import JobRow
from scheduler.store.snapshot import build_snapshot
from tests.factories import T0, add_queue, job_spec

FINISHED = 3000
PENDING = 7
SCANS = {"SCAN jobs", "SCAN attempts"}  # what grows with the finished jobs


def fill(db: Database) -> tuple[list[int], list[int]]:
    """FINISHED succeeded jobs, then PENDING pending ones; their ids."""
    with db.write() as session:
        add_queue(session)
        session.flush()
        done = insert_batch(session, [job_spec(name="done")] * FINISHED, now=T0)
        session.execute(
            update(JobRow).where(JobRow.id.in_(done)).values(status=JobStatus.SUCCEEDED)
        )
        waiting = insert_batch(session, [job_spec(name="wait")] * PENDING, now=T0)
    return done, waiting


def test_keyset_pages_cover_every_job_once(db: Database) -> None:
    done, waiting = fill(db)
    seen: list[int] = []
    before_id = None
    with db.read() as session:
        while True:
            rows, before_id = store_jobs.list_jobs(session, limit=500, before_id=before_id)
            seen.extend(row.id for row in rows)
            if before_id is None:
                break
        pending, more = store_jobs.list_jobs(session, statuses=[JobStatus.PENDING], limit=100)
        either: list[int] = []
        before_id = None
        while True:  # two statuses, a page of 3 at a time: merged newest first
            rows, before_id = store_jobs.list_jobs(
                session,
                statuses=[JobStatus.PENDING, JobStatus.SUCCEEDED],
                limit=3,
                before_id=before_id,
            )
            either.extend(row.id for row in rows)
            if before_id is None or len(either) >= 12:
                break
    assert seen == sorted(done + waiting, reverse=True)
    assert ([row.id for row in pending], more) == (sorted(waiting, reverse=True), None)
    assert either == sorted(done + waiting, reverse=True)[:12]


@contextmanager
def captured_sql(db: Database) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            statements.append((sql, params))

    engine = db.read_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def costly_reads(db: Database, read: Callable[[Session], object]) -> list[str]:
    """The plans of ``read``'s queries that read a big table whole: a scan, or a sort of
    every match. A walk in key order that stops at its LIMIT is no such read."""
    with captured_sql(db) as statements, db.read() as session:
        read(session)
    costly = []
    with db.read_engine.connect() as conn:
        for sql, params in statements:
            plan = [
                str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
            ]
            sorts = any("TEMP B-TREE" in line for line in plan)
            scans = any(line.split(" USING")[0] in SCANS for line in plan)
            paged = " LIMIT " in sql
            if (scans and (sorts or not paged)) or (paged and sorts):
                costly.append(f"{plan}  <- {sql.splitlines()[0][:100]}")
    return costly


def test_a_page_and_the_snapshot_read_through_indexes(db: Database) -> None:
    if not db.is_sqlite:
        return  # the plan check reads SQLite's EXPLAIN QUERY PLAN
    fill(db)
    pages: list[Callable[[Session], object]] = [
        lambda s: store_jobs.list_jobs(s, limit=100),
        lambda s: store_jobs.list_jobs(s, statuses=[JobStatus.PENDING], limit=100),
        lambda s: store_jobs.list_jobs(
            s, statuses=[JobStatus.PENDING, JobStatus.SUCCEEDED], limit=100
        ),
        lambda s: store_jobs.list_jobs(s, name="wait", limit=100),
        lambda s: store_jobs.list_jobs(s, queue="default", limit=100),
        lambda s: build_snapshot(s, T0),
    ]
    for read in pages:
        assert costly_reads(db, read) == []
