"""Checkpoint progress and the stop protocol through the store, on each backend.

- the agent's ``AttemptReport.progress`` lands on the attempt, the snapshot's
  ``RunningJob.last_checkpoint_at`` is real, and reclaim preempts the attempt that loses
  the least work;
- the job view shows per attempt its GPU-seconds, the step it resumed from, its last
  checkpoint and, while it runs, the work at risk;
- the desired state carries the time limit and the notice signal to the agent, the
  notice with a preemption's stop only, and the server's node timeout;
- a node that stops syncing keeps its GPUs allocated until it is declared lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from scheduler.domain.spec import QueueSpec
from scheduler.domain.status import JobStatus, TerminationReason
from scheduler.domain.sync import ProgressReport
from scheduler.loops.liveness import mark_lost_nodes
from scheduler.runtime import Runtime, build_policy
from scheduler.services import jobs as job_service
from scheduler.settings import ServerSettings
from scheduler.store.db import Database
from scheduler.store.jobs import get_job, latest_attempt
from scheduler.store.models import AllocationRow, AttemptRow, utcnow
from scheduler.store.nodes import get_node
from scheduler.store.queues import create_queue
from scheduler.store.snapshot import build_snapshot
from scheduler.store.views import job_detail
from tests.checks import assert_no_attempt_overlap
from tests.factories import (
    NODE_TIMEOUT_S,
    T0,
    add_job,
    at,
    exited,
    node_facts,
    place_job,
    register,
    report,
    submit_and_place,
    sync,
)

N1 = node_facts("n1", gpus=4)


def progress(
    step: int,
    checkpoint_step: int | None = None,
    checkpoint_at: datetime | None = None,
    resumed_from: int | None = 0,
) -> ProgressReport:
    return ProgressReport(
        step=step,
        last_checkpoint_step=checkpoint_step,
        last_checkpoint_at=None if checkpoint_at is None else checkpoint_at.timestamp(),
        resumed_from_step=resumed_from,
    )


def attempt_row(db: Database, attempt_id: int) -> AttemptRow:
    with db.read() as session:
        row = session.get(AttemptRow, attempt_id)
        assert row is not None
        return row


def test_the_progress_an_agent_reports_lands_on_the_attempt(db: Database) -> None:
    register(db, N1)
    _, attempt = submit_and_place(db, {"n1": [0, 1]})
    sync(db, N1, report(attempt, progress=progress(5)), now=at(10))
    row = attempt_row(db, attempt)
    assert (row.step, row.last_checkpoint_step, row.last_checkpoint_at) == (5, None, None)
    assert row.resumed_from_step == 0

    sync(db, N1, report(attempt, progress=progress(50, 40, at(300))), now=at(310))
    sync(db, N1, report(attempt), now=at(320))  # no progress file this time: kept
    sync(db, N1, report(attempt, progress=progress(51, 30, at(200))), now=at(330))  # stale
    row = attempt_row(db, attempt)
    assert (row.step, row.last_checkpoint_at) == (51, at(300))  # a checkpoint never goes back
    with db.read() as session:
        (running,) = build_snapshot(session, at(330)).running
        assert running.last_checkpoint_at == at(300).timestamp()

    final = progress(60, 60, at(400))  # it checkpointed on SIGTERM, then exited
    sync(db, N1, exited(attempt, 0, progress=final), now=at(401))
    row = attempt_row(db, attempt)
    assert (row.last_checkpoint_step, row.last_checkpoint_at) == (60, at(400))


def test_the_job_view_tells_gpu_seconds_checkpoints_and_work_at_risk(db: Database) -> None:
    register(db, N1)
    job_id, first = submit_and_place(db, {"n1": [0, 1]}, max_retries=1)
    sync(db, N1, report(first), now=at(100))
    sync(db, N1, exited(first, 3, progress=progress(80, 80, at(150))), now=at(200))
    second = place_job(db, job_id, {"n1": [2, 3]}, at(300))
    sync(db, N1, report(second, progress=progress(90, None, None, 80)), now=at(400))
    with db.read() as session:  # before a checkpoint of its own: at risk since its start
        view = job_detail(session, get_job(session, job_id), now=at(650))
    assert view.attempts is not None
    assert view.attempts[1].work_at_risk_gpu_s == 2 * 250.0
    sync(db, N1, report(second, progress=progress(120, 100, at(700), 80)), now=at(710))

    with db.read() as session:
        view = job_detail(session, get_job(session, job_id), now=at(1000))
    assert view.attempts is not None
    one, two = view.attempts
    assert (one.number, one.reason, one.exit_code, one.nodes) == (1, "failed", 3, ["n1"])
    assert (one.gpu_count, one.gpu_seconds) == (2, 2 * 100.0)
    assert (one.resumed_from_step, one.last_checkpoint_step) == (0, 80)
    assert one.last_checkpoint_at == at(150) and one.work_at_risk_gpu_s is None
    assert [g.index for g in two.gpus] == [2, 3]
    assert two.gpu_seconds == 2 * 600.0  # running since 400
    assert (two.resumed_from_step, two.step, two.last_checkpoint_step) == (80, 120, 100)
    assert two.work_at_risk_gpu_s == 2 * 300.0  # since its checkpoint at 700


def test_reclaim_preempts_the_attempt_that_loses_the_least_work(db: Database) -> None:
    """Two 2-GPU attempts of a lender queue fill n1; a queue owed 2 GPUs submits. With
    equal work at risk the older attempt would go (the lower id); the newer one
    checkpointed a minute ago, so it is the one stopped."""
    register(db, N1)
    with db.write() as session:
        create_queue(session, QueueSpec(name="owed", guaranteed_gpus=2), T0)
    _, older_attempt = submit_and_place(db, {"n1": [0, 1]})
    newer, newer_attempt = submit_and_place(db, {"n1": [2, 3]})
    sync(db, N1, report(older_attempt), report(newer_attempt), now=at(10))
    checkpointed = report(newer_attempt, progress=progress(500, 500, at(3540)))
    sync(db, N1, report(older_attempt), checkpointed, now=at(3550))
    with db.write() as session:
        waiting = add_job(session, gpus=2, queue="owed", now=at(3590)).id
    settings = ServerSettings(data_dir=Path("."), database_url=db.url)
    with db.read() as session:
        decisions = build_policy(settings).decide(build_snapshot(session, at(3600)))
    (preemption,) = decisions.preemptions
    assert (preemption.job_id, preemption.attempt_id) == (newer, newer_attempt)
    assert f"job {waiting}" in preemption.message


def test_the_desired_state_carries_the_time_limit_notice_and_node_timeout(
    db: Database, tmp_path: Path
) -> None:
    register(db, N1)
    job_id, attempt = submit_and_place(
        db, {"n1": [0]}, time_limit_s="2h", signal="USR1@90", grace_period_s=20
    )
    _, plain = submit_and_place(db, {"n1": [1]})
    reply = sync(db, N1, now=at(2))
    assert reply.node_timeout_s == NODE_TIMEOUT_S
    launches = {launch.attempt_id: launch for launch in reply.run}
    noticed = launches[attempt]
    assert (noticed.time_limit_s, noticed.notice_signal, noticed.notice_s) == (7200, "USR1", 90)
    assert noticed.grace_period_s == 20
    assert (launches[plain].time_limit_s, launches[plain].notice_signal) == (None, None)

    rt = Runtime(db=db, settings=ServerSettings(data_dir=tmp_path, database_url=db.url))
    sync(db, N1, report(attempt), report(plain), now=at(3))
    job_service.cancel(rt, job_id)
    (stop,) = sync(db, N1, report(attempt), report(plain), now=at(4)).stop
    assert (stop.reason, stop.notice_signal, stop.notice_s) == ("cancelled", None, 0)
    assert stop.grace_period_s == 20


def test_a_silent_node_keeps_its_gpus_until_it_is_declared_lost(
    db: Database, tmp_path: Path
) -> None:
    rt = Runtime(db=db, settings=ServerSettings(data_dir=tmp_path, database_url=db.url))
    timeout_s = rt.settings.node_timeout_s
    started = utcnow() - timedelta(seconds=timeout_s / 2)
    register(db, N1, now=started)
    job_id, attempt = submit_and_place(db, {"n1": [0, 1]}, now=started)
    sync(db, N1, report(attempt), now=started + timedelta(seconds=2))  # then silence

    assert mark_lost_nodes(rt) == []  # not yet past the timeout: its process may still run
    with db.read() as session:
        held = session.scalars(select(AllocationRow).where(AllocationRow.released_at.is_(None)))
        assert sorted(a.gpu_index for a in held) == [0, 1]
        assert get_job(session, job_id).status is JobStatus.RUNNING

    with db.write() as session:  # time passes: its last sync is now past the timeout
        get_node(session, "n1").last_seen_at = utcnow() - timedelta(seconds=timeout_s + 1)
    assert mark_lost_nodes(rt) == ["n1"]
    with db.read() as session:
        assert (
            session.scalars(select(AllocationRow).where(AllocationRow.released_at.is_(None))).all()
            == []
        )
        assert get_job(session, job_id).status is JobStatus.PENDING
        ended = latest_attempt(session, job_id)
        assert ended is not None and ended.reason is TerminationReason.NODE_LOST
    assert_no_attempt_overlap(db)
