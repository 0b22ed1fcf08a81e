"""A cycle's placements go in together; a quick attempt's end may come before its start.

``apply_decisions`` places all of a cycle's jobs in a few statements (one compare-and-set
for the jobs, one insert per table), with one event per placed job, leaving out a job
that changed since the snapshot. An agent that reports an attempt's end in the same
sync as its start (a process that ended before its first report) still has it run.
"""

from __future__ import annotations

from sqlalchemy import select

from scheduler.domain.status import AttemptStatus, JobStatus, PartState, TerminationReason
from scheduler.store.db import Database
from scheduler.store.jobs import events_of, get_job, latest_attempt
from scheduler.store.models import AllocationRow, AttemptPartRow, JobEventRow
from scheduler.store.transitions import transition_job
from tests.factories import (
    add_job,
    add_queue,
    at,
    count,
    exited,
    node_facts,
    place,
    placement,
    sync,
)

N1 = node_facts("n1", gpus=4)
N2 = node_facts("n2", gpus=4)


def _cluster(db: Database) -> None:
    with db.write() as session:
        add_queue(session)
    for facts in (N1, N2):
        sync(db, facts, now=at(0))


def _status_changes(db: Database, job_id: int) -> list[str]:
    with db.read() as session:
        return [e.new_status.value for e in events_of(session, job_id) if e.new_status]


def test_a_cycles_placements_go_in_together_with_an_event_each(db: Database) -> None:
    _cluster(db)
    with db.write() as session:
        one, two, gang, gone = (
            add_job(session, gpus=1).id,
            add_job(session, gpus=2).id,
            add_job(session, gpus=2, nodes=2).id,
            add_job(session, gpus=1).id,
        )
        # cancelled after the snapshot that placed it: its placement must drop alone
        transition_job(session, gone, JobStatus.PENDING, JobStatus.CANCELLED, now=at(1))
    with db.write() as session:
        placed = place(
            session,
            placement(one, {"n1": [0]}),
            placement(two, {"n1": [1, 2]}),
            placement(gang, {"n1": [3], "n2": [0]}),
            placement(gone, {"n2": [1]}),
            now=at(2),
        )
    assert placed == 3
    with db.read() as session:
        for job_id in (one, two, gang):
            job = get_job(session, job_id)
            attempt = latest_attempt(session, job_id)
            assert (job.status, job.attempts_count) == (JobStatus.STARTING, 1)
            assert attempt is not None
            assert (attempt.number, attempt.status) == (1, AttemptStatus.STARTING)
            assert attempt.gpu_count == (1 if job_id == one else 2)
        gang_attempt = latest_attempt(session, gang)
        assert gang_attempt is not None
        ranks = session.execute(
            select(AttemptPartRow.rank, AttemptPartRow.state)
            .where(AttemptPartRow.attempt_id == gang_attempt.id)
            .order_by(AttemptPartRow.rank)
        ).all()
        assert [(rank, state) for rank, state in ranks] == [
            (0, PartState.PENDING),
            (1, PartState.PENDING),
        ]
        assert count(session, AllocationRow, AllocationRow.released_at.is_(None)) == 5
        assert latest_attempt(session, gone) is None
        assert get_job(session, gone).status is JobStatus.CANCELLED
        placed_events = session.scalars(
            select(JobEventRow.message).where(
                JobEventRow.new_status == JobStatus.STARTING, JobEventRow.job_id == gang
            )
        ).all()
        assert placed_events == ["attempt 1 placed on n1, n2"]
    for job_id in (one, two, gang):
        assert _status_changes(db, job_id) == ["starting"]


def test_a_retried_job_gets_its_next_attempt_number(db: Database) -> None:
    _cluster(db)
    with db.write() as session:
        job_id = add_job(session, gpus=1, max_retries=1).id
    with db.write() as session:
        assert place(session, placement(job_id, {"n1": [0]}), now=at(1)) == 1
        first = latest_attempt(session, job_id)
        assert first is not None
    sync(db, N1, exited(first.id, 1), now=at(2))  # failed: retried
    with db.write() as session:
        job = get_job(session, job_id)
        job.not_before = None  # skip the backoff
        assert job.status is JobStatus.PENDING
    with db.write() as session:
        assert place(session, placement(job_id, {"n2": [0]}), now=at(3)) == 1
        second = latest_attempt(session, job_id)
        assert second is not None
        assert (second.number, get_job(session, job_id).attempts_count) == (2, 2)


def test_an_end_reported_before_the_start_still_ran(db: Database) -> None:
    _cluster(db)
    with db.write() as session:
        job_id = add_job(session, gpus=1).id
    with db.write() as session:
        assert place(session, placement(job_id, {"n1": [0]}), now=at(1)) == 1
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
    sync(db, N1, exited(attempt.id, 0), now=at(2))  # its first report is its end
    with db.read() as session:
        job = get_job(session, job_id)
        ended = latest_attempt(session, job_id)
        assert ended is not None
        assert (job.status, job.termination_reason) == (
            JobStatus.SUCCEEDED,
            TerminationReason.SUCCEEDED,
        )
        assert job.started_at == at(2) and ended.started_at == at(2)
        assert count(session, AllocationRow, AllocationRow.released_at.is_(None)) == 0
    assert _status_changes(db, job_id) == ["starting", "running", "succeeded"]
