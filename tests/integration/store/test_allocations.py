"""A GPU is never allocated to two live attempts: the schema refuses it, not only the code."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from scheduler.domain.status import AttemptStatus, JobStatus
from scheduler.store.db import Database
from scheduler.store.jobs import get_job, latest_attempt
from scheduler.store.models import AllocationRow, AttemptRow, JobEventRow, NodeRow
from tests.factories import add_job, add_node, add_queue, at, count, place, placement


def _allocation(attempt_id: int, node_id: int, index: int) -> AllocationRow:
    return AllocationRow(
        attempt_id=attempt_id,
        node_id=node_id,
        gpu_index=index,
        gpu_uuid=f"GPU-raw-{attempt_id}-{index}",
        created_at=at(1),
    )


def _two_attempts(db: Database) -> tuple[int, int, int]:
    """Node ``n1`` and two attempts written straight through the ORM: (node, a1, a2)."""
    with db.write() as session:
        add_queue(session)
        node = add_node(session, "n1", gpus=2)
        ids = []
        for number in (1, 2):
            job = add_job(session)
            attempt = AttemptRow(
                job_id=job.id, number=1, status=AttemptStatus.RUNNING, created_at=at(number)
            )
            session.add(attempt)
            session.flush()
            ids.append(attempt.id)
        return node.id, ids[0], ids[1]


def test_the_schema_refuses_a_second_live_allocation_of_a_gpu(db: Database) -> None:
    node_id, first, second = _two_attempts(db)
    with db.write() as session:
        session.add(_allocation(first, node_id, 0))
    with pytest.raises(IntegrityError), db.write() as session:
        session.add(_allocation(second, node_id, 0))
    with db.write() as session:  # another GPU of the same node is fine
        session.add(_allocation(second, node_id, 1))
    with db.read() as session:
        live = session.execute(
            select(AllocationRow.attempt_id, AllocationRow.gpu_index).where(
                AllocationRow.released_at.is_(None)
            )
        ).all()
        assert sorted(live) == sorted([(first, 0), (second, 1)])


def test_a_released_allocation_frees_the_gpu_for_a_new_one(db: Database) -> None:
    node_id, first, second = _two_attempts(db)
    with db.write() as session:
        session.add(_allocation(first, node_id, 0))
    with db.write() as session:
        row = session.scalars(select(AllocationRow)).one()
        row.released_at = at(2)
    with db.write() as session:
        session.add(_allocation(second, node_id, 0))
    with db.write() as session:  # released history may pile up on one GPU
        session.scalars(
            select(AllocationRow).where(AllocationRow.attempt_id == second)
        ).one().released_at = at(3)
        session.add(_allocation(first, node_id, 0))
    with db.read() as session:
        assert count(session, AllocationRow, AllocationRow.gpu_index == 0) == 3
        assert count(session, AllocationRow, AllocationRow.released_at.is_(None)) == 1


def test_a_placement_on_a_taken_gpu_drops_only_that_placement(db: Database) -> None:
    with db.write() as session:
        add_queue(session)
        add_node(session, "n1", gpus=2)
        first, loser, third = (add_job(session).id for _ in range(3))
    with db.write() as session:
        placed = place(
            session,
            placement(first, {"n1": [0]}),
            placement(loser, {"n1": [0]}),  # a stale decision: GPU 0 was just taken
            placement(third, {"n1": [1]}),
            now=at(1),
        )
        assert placed == 2
    with db.read() as session:
        assert get_job(session, first).status is JobStatus.STARTING
        assert get_job(session, third).status is JobStatus.STARTING
        lost = get_job(session, loser)
        assert (lost.status, lost.attempts_count) == (JobStatus.PENDING, 0)
        assert latest_attempt(session, loser) is None
        assert count(session, JobEventRow, JobEventRow.job_id == loser) == 1  # "submitted"
        assert count(session, AllocationRow, AllocationRow.released_at.is_(None)) == 2
        assert session.scalars(select(NodeRow)).unique().one().name == "n1"
