"""A job's life through the store, as the server drives it: placement, agent syncs, exits.

Each step calls what the server calls (``apply_decisions``, ``apply_sync`` +
``desired_state``, ``services.jobs.cancel``, ``loops.liveness.mark_lost_nodes``) and
checks the rows it leaves: job, attempt, parts, allocations, events, desired state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from scheduler.domain.errors import Conflict
from scheduler.domain.status import (
    AttemptStatus,
    JobStatus,
    NodeState,
    PartState,
    TerminationReason,
)
from scheduler.domain.sync import AttemptReport, AttemptState, NodeFacts
from scheduler.loops.liveness import mark_lost_nodes
from scheduler.runtime import Runtime
from scheduler.services import jobs as job_service
from scheduler.settings import ServerSettings
from scheduler.store.db import Database
from scheduler.store.jobs import events_of, get_job, latest_attempt
from scheduler.store.models import AllocationRow, AttemptPartRow, JobRow, utcnow
from scheduler.store.snapshot import build_snapshot
from tests.factories import (
    CHECKPOINTS,
    T0,
    add_job,
    add_queue,
    at,
    count,
    exited,
    node_facts,
    place,
    placement,
    report,
    sync,
)

S = JobStatus
R = TerminationReason
N1 = node_facts("n1", gpus=4)
N2 = node_facts("n2", gpus=4)


def _cluster(db: Database, *nodes: NodeFacts, now: datetime = T0) -> None:
    """Queue ``default`` and these nodes, registered by a first agent sync."""
    with db.write() as session:
        add_queue(session)
    for facts in nodes:
        sync(db, facts, now=now)


def _submit_and_place(
    db: Database, gpus: dict[str, list[int]], *, now: datetime = T0, **spec: Any
) -> tuple[int, int]:
    """A job asking for exactly ``gpus`` (same count on each node), placed there: (job, attempt)."""
    per_node = len(next(iter(gpus.values())))
    with db.write() as session:
        job_id = add_job(session, gpus=per_node, nodes=len(gpus), now=now, **spec).id
    with db.write() as session:
        assert place(session, placement(job_id, gpus), now=now + timedelta(seconds=1)) == 1
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
        return job_id, attempt.id


def _job(db: Database, job_id: int) -> JobRow:
    with db.read() as session:
        return get_job(session, job_id)


def _live_gpus(db: Database) -> set[tuple[str, int]]:
    with db.read() as session:
        rows = session.execute(
            select(AllocationRow.gpu_uuid, AllocationRow.gpu_index).where(
                AllocationRow.released_at.is_(None)
            )
        )
        return {(uuid.split("-")[1], index) for uuid, index in rows}


def _status_events(db: Database, job_id: int) -> list[tuple[JobStatus | None, JobStatus | None]]:
    with db.read() as session:
        return [
            (e.old_status, e.new_status) for e in events_of(session, job_id) if e.kind == "status"
        ]


def _runtime(db: Database, tmp_path: Path) -> Runtime:
    return Runtime(db=db, settings=ServerSettings(data_dir=tmp_path, database_url=db.url))


def test_a_job_runs_to_success_through_placement_and_agent_syncs(db: Database) -> None:
    _cluster(db, N1)
    job_id, attempt_id = _submit_and_place(db, {"n1": [0, 1]})
    assert _job(db, job_id).status is S.STARTING
    assert _live_gpus(db) == {("n1", 0), ("n1", 1)}
    with db.read() as session:
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
        assert (attempt.number, attempt.status, attempt.gpu_count) == (1, AttemptStatus.STARTING, 2)

    reply = sync(db, N1, now=at(2))  # the agent learns what to start
    assert [(r.attempt_id, r.gpu_indices) for r in reply.run] == [(attempt_id, [0, 1])]

    reply = sync(db, N1, report(attempt_id), now=at(3))
    job = _job(db, job_id)
    assert (job.status, job.started_at) == (S.RUNNING, at(3))
    assert [r.attempt_id for r in reply.run] == [attempt_id]  # still wanted

    reply = sync(db, N1, exited(attempt_id, 0), now=at(63))
    job = _job(db, job_id)
    assert (job.status, job.exit_code, job.termination_reason) == (S.SUCCEEDED, 0, R.SUCCEEDED)
    assert job.ended_at == at(63)
    assert job.attained_gpu_s == pytest.approx(60 * 2)
    assert _live_gpus(db) == set()
    assert (reply.run, reply.stop) == ([], [])
    with db.read() as session:
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
        assert (attempt.status, attempt.reason, attempt.exit_code) == (
            AttemptStatus.ENDED,
            R.SUCCEEDED,
            0,
        )
        assert {a.released_at for a in session.scalars(select(AllocationRow))} == {at(63)}
    assert _status_events(db, job_id) == [
        (S.PENDING, S.STARTING),
        (S.STARTING, S.RUNNING),
        (S.RUNNING, S.SUCCEEDED),
    ]


@dataclass(frozen=True)
class Ending:
    """How an attempt ends (``report`` by the agent) and what must become of its job."""

    report: AttemptReport
    max_retries: int
    status: JobStatus
    reason: TerminationReason
    exit_code: int | None
    retries_used: int = 0
    backoff_s: float | None = None  # not_before = end + this
    ran: bool = True  # the agent reported it running before the end
    spec: dict[str, Any] = field(default_factory=dict)


ATTEMPT = 1  # the only attempt of a fresh database (ids start at 1 on both backends)
ENDINGS = {
    "exit 3, no retry left": Ending(exited(ATTEMPT, 3), 0, S.FAILED, R.FAILED, 3),
    "exit 3, retries left": Ending(
        exited(ATTEMPT, 3), 2, S.PENDING, R.FAILED, 3, retries_used=1, backoff_s=10.0
    ),
    "launch failed": Ending(
        report(ATTEMPT, AttemptState.LAUNCH_FAILED, message="python: not found"),
        0,
        S.FAILED,
        R.LAUNCH_FAILED,
        None,
        ran=False,
    ),
    "stopped by its agent, unasked": Ending(
        exited(ATTEMPT, -15, stopped_by_agent=True), 0, S.PENDING, R.PREEMPTED, -15
    ),
}


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_how_an_attempt_ends_decides_what_becomes_of_its_job(db: Database, ending: Ending) -> None:
    _cluster(db, N1)
    job_id, attempt_id = _submit_and_place(db, {"n1": [0]}, max_retries=ending.max_retries)
    assert attempt_id == ATTEMPT
    if ending.ran:
        sync(db, N1, report(attempt_id), now=at(2))
    end = at(30)
    reply = sync(db, N1, ending.report, now=end)

    job = _job(db, job_id)
    assert job.status is ending.status
    assert (job.termination_reason, job.exit_code) == (ending.reason, ending.exit_code)
    assert job.retries_used == ending.retries_used
    assert job.submitted_at == T0  # a requeued or retried job keeps its place
    assert job.attempts_count == 1
    if ending.backoff_s is None:
        assert job.not_before is None
    else:
        assert job.not_before == end + timedelta(seconds=ending.backoff_s)
        assert job.not_before > end
    assert job.ended_at == (end if ending.status in (S.FAILED, S.SUCCEEDED) else None)
    assert _live_gpus(db) == set()
    assert (reply.run, reply.stop) == ([], [])
    with db.read() as session:
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
        assert (attempt.status, attempt.reason) == (AttemptStatus.ENDED, ending.reason)
        kinds = [e.kind for e in events_of(session, job_id)]
        assert ("launch_failed" in kinds) == (ending.reason is R.LAUNCH_FAILED)
        if ending.status is S.PENDING:  # the snapshot offers it again, at its old place
            (pending,) = build_snapshot(session, end).pending
            assert (pending.job_id, pending.submitted_at) == (job_id, T0.timestamp())


def test_desired_state_carries_gpus_and_the_corral_environment(db: Database) -> None:
    _cluster(db, N1)
    job_id, first = _submit_and_place(db, {"n1": [1, 3]}, env={"DATA": "/data/bert"})
    (launch,) = sync(db, N1, now=at(2)).run
    env = launch.env
    checkpoint_dir = str(CHECKPOINTS / str(job_id))
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert env["CORRAL_JOB_ID"] == str(job_id)
    assert env["CORRAL_ATTEMPT"] == "1"
    assert env["CORRAL_CHECKPOINT_DIR"] == checkpoint_dir
    assert (env["CORRAL_NODE_RANK"], env["CORRAL_NUM_NODES"]) == ("0", "1")
    assert env["DATA"] == "/data/bert"  # the job's own env passes through
    assert (launch.attempt_number, launch.gpu_indices, launch.node_rank) == (1, [1, 3], 0)

    sync(db, N1, report(first), now=at(3))  # preempted by its agent: requeued
    sync(db, N1, exited(first, -15, stopped_by_agent=True), now=at(4))
    with db.write() as session:
        assert place(session, placement(job_id, {"n1": [0, 2]}), now=at(5)) == 1
    (launch,) = sync(db, N1, now=at(6)).run
    assert launch.attempt_id != first
    assert launch.env["CORRAL_ATTEMPT"] == "2"
    assert launch.env["CORRAL_CHECKPOINT_DIR"] == checkpoint_dir  # resumes where it stopped
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "0,2"


def test_a_failing_part_stops_the_rest_of_the_gang(db: Database) -> None:
    _cluster(db, N1, N2)
    job_id, attempt_id = _submit_and_place(db, {"n1": [0, 1], "n2": [2, 3]})
    envs = {}
    for facts in (N1, N2):
        (launch,) = sync(db, facts, now=at(2)).run
        envs[facts.name] = launch.env
        sync(db, facts, report(attempt_id), now=at(3))
    assert {n: (e["CORRAL_NODE_RANK"], e["CORRAL_NUM_NODES"]) for n, e in envs.items()} == {
        "n1": ("0", "2"),
        "n2": ("1", "2"),
    }
    assert (envs["n1"]["CUDA_VISIBLE_DEVICES"], envs["n2"]["CUDA_VISIBLE_DEVICES"]) == (
        "0,1",
        "2,3",
    )
    assert _job(db, job_id).status is S.RUNNING

    sync(db, N2, exited(attempt_id, 3), now=at(10))  # rank 1 crashes
    assert _job(db, job_id).status is S.STOPPING
    assert _live_gpus(db) == {("n1", 0), ("n1", 1)}  # n2's GPUs are free at once
    reply = sync(db, N1, report(attempt_id), now=at(11))
    assert reply.run == []
    assert [(s.attempt_id, s.reason) for s in reply.stop] == [(attempt_id, R.FAILED.value)]

    sync(db, N1, exited(attempt_id, -15, stopped_by_agent=True), now=at(12))
    job = _job(db, job_id)
    assert (job.status, job.termination_reason) == (S.FAILED, R.FAILED)
    assert job.exit_code == 3  # the crash, not the SIGTERM we sent the other part
    assert _live_gpus(db) == set()
    assert _status_events(db, job_id)[-2:] == [(S.RUNNING, S.STOPPING), (S.STOPPING, S.FAILED)]


def test_cancel_ends_a_pending_job_at_once(db: Database, tmp_path: Path) -> None:
    _cluster(db, N1)
    with db.write() as session:
        job_id = add_job(session).id
    rt = _runtime(db, tmp_path)
    view = job_service.cancel(rt, job_id)
    assert view.status == S.CANCELLED.value
    job = _job(db, job_id)
    assert (job.status, job.termination_reason) == (S.CANCELLED, R.CANCELLED)
    assert job.ended_at is not None
    with pytest.raises(Conflict):
        job_service.cancel(rt, job_id)
    assert _status_events(db, job_id) == [(S.PENDING, S.CANCELLED)]


def test_cancel_stops_a_running_job_then_ends_it(db: Database, tmp_path: Path) -> None:
    _cluster(db, N1)
    job_id, attempt_id = _submit_and_place(db, {"n1": [0, 1]})
    sync(db, N1, report(attempt_id), now=at(2))
    view = job_service.cancel(_runtime(db, tmp_path), job_id)
    assert view.status == S.STOPPING.value
    assert _live_gpus(db) == {("n1", 0), ("n1", 1)}  # held until the process is gone

    reply = sync(db, N1, report(attempt_id, AttemptState.STOPPING), now=at(3))
    assert reply.run == []
    assert [(s.attempt_id, s.reason) for s in reply.stop] == [(attempt_id, R.CANCELLED.value)]
    sync(db, N1, exited(attempt_id, -15, stopped_by_agent=True), now=at(4))
    job = _job(db, job_id)
    assert (job.status, job.termination_reason) == (S.CANCELLED, R.CANCELLED)
    assert _live_gpus(db) == set()


def test_a_lost_node_frees_its_gpus_and_requeues_its_job(db: Database, tmp_path: Path) -> None:
    rt = _runtime(db, tmp_path)
    long_ago = utcnow() - timedelta(seconds=rt.settings.node_timeout_s + 600)
    _cluster(db, N1, now=long_ago)  # n1 stopped syncing long ago
    sync(db, N2, now=utcnow())  # n2 is fresh
    job_id, attempt_id = _submit_and_place(db, {"n1": [0, 1]}, now=long_ago)
    sync(db, N1, report(attempt_id), now=long_ago + timedelta(seconds=2))

    assert mark_lost_nodes(rt) == ["n1"]
    assert mark_lost_nodes(rt) == []  # already lost: nothing more to do
    job = _job(db, job_id)
    assert (job.status, job.termination_reason) == (S.PENDING, R.NODE_LOST)
    assert (job.retries_used, job.submitted_at) == (0, long_ago)
    assert _live_gpus(db) == set()
    with db.read() as session:
        part = session.scalars(select(AttemptPartRow)).one()
        assert part.state is PartState.LOST
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
        assert (attempt.status, attempt.reason) == (AttemptStatus.ENDED, R.NODE_LOST)
        states = {n.name: n.state for n in build_snapshot(session, utcnow()).nodes}
        assert states == {"n1": NodeState.LOST, "n2": NodeState.UP}
        assert count(session, AllocationRow, AllocationRow.released_at.is_(None)) == 0
