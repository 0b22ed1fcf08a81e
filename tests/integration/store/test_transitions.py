"""``transition_job`` is compare-and-set: one event per won change, nothing otherwise."""

from __future__ import annotations

import pytest

from scheduler.domain.status import IllegalTransition, JobStatus
from scheduler.store.db import Database
from scheduler.store.jobs import events_of, get_job
from scheduler.store.models import JobEventRow
from scheduler.store.transitions import transition_job
from tests.factories import add_job, add_queue, at, count

S = JobStatus


def _pending_job(db: Database) -> int:
    with db.write() as session:
        add_queue(session)
        return add_job(session).id


def _status_and_events(
    db: Database, job_id: int
) -> tuple[JobStatus, list[tuple[str, str, str, str]]]:
    with db.read() as session:
        events = [
            (e.kind, str(e.old_status), str(e.new_status), e.message)
            for e in events_of(session, job_id)
        ]
        return get_job(session, job_id).status, events


def test_a_won_transition_writes_the_change_and_exactly_one_event(db: Database) -> None:
    job_id = _pending_job(db)
    with db.write() as session:
        before = count(session, JobEventRow)
        won = transition_job(
            session, job_id, S.PENDING, S.CANCELLED, now=at(5), message="bye", wait_reason=None
        )
        assert won
        assert count(session, JobEventRow) == before + 1
    with db.read() as session:
        job = get_job(session, job_id)
        assert job.status is S.CANCELLED
        assert job.updated_at == at(5)
        last = events_of(session, job_id)[-1]
        assert (last.kind, last.old_status, last.new_status, last.message, last.at) == (
            "status",
            S.PENDING,
            S.CANCELLED,
            "bye",
            at(5),
        )


def test_a_lost_race_returns_false_and_writes_nothing(db: Database) -> None:
    job_id = _pending_job(db)
    with db.read() as session:  # a reader sees "pending" ...
        seen = get_job(session, job_id).status
    with db.write() as session:  # ... someone else cancels it first ...
        assert transition_job(session, job_id, S.PENDING, S.CANCELLED, now=at(1))
    before = _status_and_events(db, job_id)
    with db.write() as session:  # ... and the reader's stale compare-and-set loses
        won = transition_job(
            session, job_id, seen, S.STARTING, now=at(2), message="placed", attempts_count=7
        )
        assert not won
    assert _status_and_events(db, job_id) == before
    with db.read() as session:
        assert get_job(session, job_id).attempts_count == 0  # the extra fields were not set


@pytest.mark.parametrize(
    ("expected", "new"),
    [
        (S.PENDING, S.RUNNING),  # skips starting
        (S.PENDING, S.SUCCEEDED),
        (S.PENDING, S.PENDING),
        (S.CANCELLED, S.PENDING),  # terminal
    ],
    ids=lambda s: s.value,
)
def test_an_illegal_edge_raises_and_writes_nothing(
    db: Database, expected: JobStatus, new: JobStatus
) -> None:
    job_id = _pending_job(db)
    if expected is not S.PENDING:
        with db.write() as session:
            assert transition_job(session, job_id, S.PENDING, expected, now=at(1))
    before = _status_and_events(db, job_id)
    # the raise is caught inside the transaction, which then commits what was written
    with db.write() as session, pytest.raises(IllegalTransition):
        transition_job(session, job_id, expected, new, now=at(2), exit_code=9)
    assert _status_and_events(db, job_id) == before
    with db.read() as session:
        assert get_job(session, job_id).exit_code is None
