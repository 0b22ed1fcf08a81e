"""Attempt logs: appending is idempotent (duplicates skipped, overlaps trimmed, gaps
ignored) and reads page across chunks."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.runtime import Runtime
from scheduler.services import jobs as job_service
from scheduler.settings import ServerSettings
from scheduler.store.db import Database
from scheduler.store.logs import append_log, read_log
from scheduler.store.models import AttemptPartRow, LogChunkRow
from tests.factories import (
    add_job,
    add_queue,
    at,
    exited,
    node_facts,
    place,
    placement,
    report,
    sync,
)

N1 = node_facts("n1", gpus=2)

# (offset, data, bytes held after it, why)
APPENDS = [
    (0, b"hello ", 6, "the first chunk"),
    (0, b"hello ", 6, "a duplicate is skipped"),
    (3, b"lo world\n", 12, "an overlap keeps only its new tail"),
    (20, b"gap", 12, "a chunk past the end is ignored: the agent resends from the ack"),
    (12, b"", 12, "an empty chunk"),
    (12, b"bye\n", 16, "a contiguous chunk"),
    (5, b" w", 16, "a chunk wholly held already"),
]
TEXT = b"hello world\nbye\n"


def _placed_job(db: Database) -> tuple[int, int]:
    """A job placed on ``n1``: (job id, attempt id)."""
    sync(db, N1)
    with db.write() as session:
        add_queue(session)
        job_id = add_job(session).id
    with db.write() as session:
        assert place(session, placement(job_id, {"n1": [0]}), now=at(1)) == 1
    with db.read() as session:
        return job_id, session.scalars(select(AttemptPartRow.attempt_id)).one()


def _part(session: Session, attempt_id: int) -> AttemptPartRow:
    stmt = select(AttemptPartRow).where(AttemptPartRow.attempt_id == attempt_id)
    return session.scalars(stmt).unique().one()


def test_append_log_is_idempotent(db: Database) -> None:
    _, attempt_id = _placed_job(db)
    for offset, data, held, why in APPENDS:
        with db.write() as session:
            append_log(session, _part(session, attempt_id), offset, data)
        with db.read() as session:
            assert _part(session, attempt_id).log_bytes == held, why
    with db.read() as session:
        part = _part(session, attempt_id)
        assert read_log(session, part, 0, 1000) == TEXT
        chunks = session.execute(
            select(LogChunkRow.offset, LogChunkRow.data)
            .where(LogChunkRow.part_id == part.id)
            .order_by(LogChunkRow.offset)
        ).all()
        assert [tuple(c) for c in chunks] == [(0, b"hello "), (6, b"world\n"), (12, b"bye\n")]


@pytest.mark.parametrize(
    ("offset", "limit", "expected"),
    [
        (0, 4, b"hell"),
        (4, 4, b"o wo"),  # across the first chunk boundary
        (10, 4, b"d\nby"),  # across the second
        (0, 16, TEXT),
        (14, 100, b"e\n"),
        (16, 10, b""),  # at the end
        (40, 10, b""),  # past it
    ],
)
def test_read_log_pages_across_chunks(
    db: Database, offset: int, limit: int, expected: bytes
) -> None:
    _, attempt_id = _placed_job(db)
    with db.write() as session:
        for chunk_offset, data, _, _ in APPENDS:
            append_log(session, _part(session, attempt_id), chunk_offset, data)
    with db.read() as session:
        assert read_log(session, _part(session, attempt_id), offset, limit) == expected


def test_logs_come_with_syncs_and_acks_say_where_to_resume(db: Database, tmp_path: Path) -> None:
    job_id, attempt_id = _placed_job(db)
    last = exited(attempt_id, 0, log=(16, b"done\n"))
    reports = [
        report(attempt_id, log=(0, b"epoch 1\n")),
        report(attempt_id, log=(0, b"epoch 1\nepoch 2\n")),  # resent from the start
        report(attempt_id, log=(99, b"lost in a gap")),
        last,
        last,  # the agent resends until the ack covers its log
    ]
    acks = [sync(db, N1, r, now=at(2 + i)).log_acks for i, r in enumerate(reports)]
    assert acks == [{attempt_id: n} for n in (8, 16, 16, 21, 21)]

    rt = Runtime(db=db, settings=ServerSettings(data_dir=tmp_path, database_url=db.url))
    pages, offset, complete = [], 0, False
    while not complete:
        page = job_service.read_logs(rt, job_id, None, offset, 6)
        pages.append(page.data)
        offset, complete = page.next_offset, page.complete
    assert pages == ["epoch ", "1\nepoc", "h 2\ndo", "ne\n"]
