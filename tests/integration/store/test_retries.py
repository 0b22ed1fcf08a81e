"""The retry rules through the store, on each backend: attempts end as agents report them
and the job follows (``store.retries`` applying ``domain.retry``).

Each test drives a job through several attempts with explicit times, checks the job's
status, retry count, backoff and the event that says why, and ends by checking that no
two attempts of a job ever overlapped (``tests.checks``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from scheduler.domain.decisions import Decisions, Preemption
from scheduler.domain.retry import RetrySettings
from scheduler.domain.status import JobStatus, TerminationReason
from scheduler.domain.sync import AttemptReport
from scheduler.runtime import Runtime
from scheduler.services import jobs as job_service
from scheduler.settings import ServerSettings
from scheduler.store.attempts import overdue_attempts, request_stop
from scheduler.store.db import Database
from scheduler.store.jobs import events_of, get_job
from scheduler.store.models import JobRow
from scheduler.store.placements import apply_decisions
from scheduler.store.snapshot import build_snapshot
from tests.checks import assert_no_attempt_overlap
from tests.factories import (
    T0,
    at,
    exited,
    launch_failed,
    node_facts,
    place_job,
    register,
    report,
    submit_and_place,
    sync,
)

S = JobStatus
R = TerminationReason
N1 = node_facts("n1", gpus=4)
N2 = node_facts("n2", gpus=4)
FACTS = {"n1": N1, "n2": N2}


def job(db: Database, job_id: int) -> JobRow:
    with db.read() as session:
        return get_job(session, job_id)


def last_message(db: Database, job_id: int) -> str:
    with db.read() as session:
        return events_of(session, job_id)[-1].message


def run(
    db: Database,
    attempt_id: int,
    node: str,
    start: datetime,
    ending: AttemptReport,
    *,
    retry: RetrySettings | None = None,
) -> datetime:
    """The agent of ``node`` reports the attempt running at ``start`` and ``ending`` a
    minute later; returns the end time."""
    end = start + timedelta(seconds=60)
    sync(db, FACTS[node], report(attempt_id), now=start)
    sync(db, FACTS[node], ending, now=end, **({"retry": retry} if retry else {}))
    return end


def test_failures_retry_with_doubling_backoff_until_the_budget_is_spent(db: Database) -> None:
    settings = RetrySettings(backoff_base_s=10, backoff_max_s=25)
    register(db, N1)
    job_id, attempt = submit_and_place(db, {"n1": [0]}, max_retries=3)
    now = at(10)
    for number, delay_s in enumerate([10, 20, 25], start=1):
        end = run(db, attempt, "n1", now, exited(attempt, 3), retry=settings)
        row = job(db, job_id)
        assert (row.status, row.retries_used, row.exit_code) == (S.PENDING, number, 3)
        assert row.not_before == end + timedelta(seconds=delay_s)
        assert row.submitted_at == T0  # keeps its place in line
        assert f"retry {number} of 3 in {delay_s}s" in last_message(db, job_id)
        with db.read() as session:
            (pending,) = build_snapshot(session, end).pending
            assert pending.not_before == row.not_before.timestamp()  # the policy waits
        now = row.not_before + timedelta(seconds=1)
        attempt = place_job(db, job_id, {"n1": [0]}, now)
        now += timedelta(seconds=1)
    run(db, attempt, "n1", now, exited(attempt, 3), retry=settings)
    row = job(db, job_id)
    assert (row.status, row.retries_used, row.attempts_count) == (S.FAILED, 3, 4)
    assert "no retry left (3 of 3 used)" in last_message(db, job_id)
    assert_no_attempt_overlap(db)


def test_only_the_listed_exit_codes_are_retried(db: Database) -> None:
    register(db, N1)
    job_id, attempt = submit_and_place(
        db, {"n1": [0]}, max_retries=5, retry_on_exit_codes=[75, 137]
    )
    end = run(db, attempt, "n1", at(2), exited(attempt, 75))
    assert (job(db, job_id).status, job(db, job_id).retries_used) == (S.PENDING, 1)
    attempt = place_job(db, job_id, {"n1": [0]}, end + timedelta(seconds=11))
    end = run(db, attempt, "n1", end + timedelta(seconds=12), exited(attempt, -9))  # OOM kill
    assert job(db, job_id).status is S.PENDING  # -9 is the shell's 137
    attempt = place_job(db, job_id, {"n1": [0]}, end + timedelta(seconds=21))
    run(db, attempt, "n1", end + timedelta(seconds=22), exited(attempt, 1))
    row = job(db, job_id)
    assert (row.status, row.retries_used, row.exit_code) == (S.FAILED, 2, 1)
    assert "exit code 1 is not in retry_on_exit_codes [75, 137]" in last_message(db, job_id)
    assert_no_attempt_overlap(db)


def test_preemption_and_node_loss_requeue_without_using_a_retry(db: Database) -> None:
    register(db, N1)
    job_id, attempt = submit_and_place(db, {"n1": [0]}, max_retries=1)
    sync(db, N1, report(attempt), now=at(2))
    with db.write() as session:  # the policy preempts it
        preemption = Preemption(job_id=job_id, attempt_id=attempt, message="for job 9")
        assert apply_decisions(session, Decisions(preemptions=(preemption,)), at(3)).preempted
    sync(db, N1, exited(attempt, -15, stopped_by_agent=True), now=at(4))
    row = job(db, job_id)
    assert (row.status, row.termination_reason, row.retries_used) == (S.PENDING, R.PREEMPTED, 0)
    assert row.not_before is None  # no backoff: it may start again at once
    assert "requeued keeping its place (not counted as a retry)" in last_message(db, job_id)

    attempt = place_job(db, job_id, {"n1": [1]}, at(5))
    sync(db, N1, report(attempt), now=at(6))
    sync(db, N1, now=at(7))  # the agent restarted and lost the process: like a lost node
    row = job(db, job_id)
    assert (row.status, row.termination_reason, row.retries_used) == (S.PENDING, R.NODE_LOST, 0)

    attempt = place_job(db, job_id, {"n1": [2]}, at(8))
    run(db, attempt, "n1", at(9), exited(attempt, 3))  # the one retry is still there
    row = job(db, job_id)
    assert (row.status, row.retries_used, row.submitted_at) == (S.PENDING, 1, T0)
    assert_no_attempt_overlap(db)


def test_cancel_is_final_even_while_a_retry_waits_in_backoff(db: Database, tmp_path: Path) -> None:
    register(db, N1)
    rt = Runtime(db=db, settings=ServerSettings(data_dir=tmp_path, database_url=db.url))
    job_id, attempt = submit_and_place(db, {"n1": [0]}, max_retries=3)
    run(db, attempt, "n1", at(2), exited(attempt, 3))
    assert job(db, job_id).not_before is not None  # backing off
    assert job_service.cancel(rt, job_id).status == S.CANCELLED.value
    row = job(db, job_id)
    assert (row.status, row.retries_used, row.attempts_count) == (S.CANCELLED, 1, 1)
    with db.read() as session:
        assert build_snapshot(session, at(3600)).pending == ()  # never placed again


def test_cancel_of_a_running_job_with_retries_left_is_final(db: Database, tmp_path: Path) -> None:
    register(db, N1)
    rt = Runtime(db=db, settings=ServerSettings(data_dir=tmp_path, database_url=db.url))
    job_id, attempt = submit_and_place(db, {"n1": [0]}, max_retries=3)
    sync(db, N1, report(attempt), now=at(2))
    job_service.cancel(rt, job_id)
    sync(db, N1, exited(attempt, 1, stopped_by_agent=True), now=at(3))  # it died badly
    row = job(db, job_id)
    assert (row.status, row.termination_reason, row.retries_used) == (S.CANCELLED, R.CANCELLED, 0)
    assert "cancelled for good" in last_message(db, job_id)


def _time_out(db: Database, attempt_id: int, now: datetime) -> None:
    """What the limits loop does at ``now``: stop every attempt past its time limit."""
    with db.write() as session:
        overdue = overdue_attempts(session, now)
        assert [a.id for a, _ in overdue] == [attempt_id]
        for attempt, limit_s in overdue:
            request_stop(session, attempt, R.TIMEOUT, now, f"time limit of {limit_s}s reached")


@pytest.mark.parametrize("retry_on_timeout", [False, True])
def test_a_timeout_fails_unless_the_spec_asks_to_retry_it(
    db: Database, retry_on_timeout: bool
) -> None:
    register(db, N1)
    job_id, attempt = submit_and_place(
        db,
        {"n1": [0]},
        max_retries=2,
        time_limit_s=60,
        retry_on_timeout=retry_on_timeout,
        signal="USR1@10",
    )
    sync(db, N1, report(attempt), now=at(2))
    _time_out(db, attempt, at(62))
    (stop,) = sync(db, N1, report(attempt), now=at(63)).stop
    assert (stop.reason, stop.notice_signal) == ("timeout", None)  # the notice went before
    sync(db, N1, exited(attempt, 0, stopped_by_agent=True), now=at(64))  # checkpointed, left
    row = job(db, job_id)
    assert row.termination_reason is R.TIMEOUT
    if retry_on_timeout:
        assert (row.status, row.retries_used, row.not_before) == (S.PENDING, 1, None)
        assert "retry 1 of 2 now (retry_on_timeout)" in last_message(db, job_id)
    else:
        assert (row.status, row.retries_used) == (S.FAILED, 0)
        assert "not retried (retry_on_timeout off)" in last_message(db, job_id)


def test_the_same_failure_on_two_nodes_stops_retrying(db: Database) -> None:
    register(db, N1, N2)
    job_id, attempt = submit_and_place(db, {"n1": [0]}, max_retries=5)
    end = run(db, attempt, "n1", at(2), exited(attempt, 3))
    attempt = place_job(db, job_id, {"n1": [1]}, end + timedelta(seconds=11))
    end = run(db, attempt, "n1", end + timedelta(seconds=12), exited(attempt, 3))
    assert job(db, job_id).status is S.PENDING  # the same node twice: maybe the node
    attempt = place_job(db, job_id, {"n2": [0]}, end + timedelta(seconds=21))
    run(db, attempt, "n2", end + timedelta(seconds=22), exited(attempt, 3))
    row = job(db, job_id)
    assert (row.status, row.retries_used, row.exit_code) == (S.FAILED, 2, 3)
    assert last_message(db, job_id) == (
        "attempt 3 ended: failed (exit code 3); not retried: it failed the same way "
        "(exit code 3) on n1 and n2, so another node will not help"
    )
    assert_no_attempt_overlap(db)


def test_launch_failures_on_two_nodes_stop_retrying(db: Database) -> None:
    register(db, N1, N2)
    job_id, attempt = submit_and_place(db, {"n1": [0]}, max_retries=5)
    sync(db, N1, launch_failed(attempt), now=at(2))
    assert job(db, job_id).status is S.PENDING
    attempt = place_job(db, job_id, {"n2": [0]}, at(20))
    sync(db, N2, launch_failed(attempt), now=at(21))
    row = job(db, job_id)
    assert (row.status, row.termination_reason) == (S.FAILED, R.LAUNCH_FAILED)
    assert "(launch failed) on n1 and n2" in last_message(db, job_id)


@pytest.mark.parametrize("exit_code", [0, 1, -15])
def test_a_workload_stopped_for_a_preemption_is_preempted_however_it_exits(
    db: Database, exit_code: int
) -> None:
    """Exit 0 (checkpointed on SIGTERM), 1 (crashed while saving) or -15: never failed."""
    register(db, N1)
    job_id, attempt = submit_and_place(db, {"n1": [0]}, max_retries=0, signal="USR1@30")
    sync(db, N1, report(attempt), now=at(2))
    with db.write() as session:
        preemption = Preemption(job_id=job_id, attempt_id=attempt, message="for job 9")
        apply_decisions(session, Decisions(preemptions=(preemption,)), at(3))
    (stop,) = sync(db, N1, report(attempt), now=at(4)).stop
    assert (stop.reason, stop.notice_signal, stop.notice_s) == ("preempted", "USR1", 30)
    sync(db, N1, exited(attempt, exit_code, stopped_by_agent=True), now=at(40))
    row = job(db, job_id)
    assert (row.status, row.termination_reason, row.retries_used) == (S.PENDING, R.PREEMPTED, 0)
