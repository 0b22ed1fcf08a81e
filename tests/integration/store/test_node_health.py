"""Bad-node detection through the store, on each backend: a node where attempts of
different jobs keep failing is drained with a reason; a success or an undrain resets it.

The default rule: 3 failed attempts in a row on a node, of at least 2 jobs. Jobs run one
at a time on GPU 0 of n1 here; each ends as the agent reports it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from itertools import count

import pytest

from scheduler.domain.retry import RetrySettings
from scheduler.domain.status import NodeState
from scheduler.domain.sync import AttemptReport
from scheduler.store.db import Database
from scheduler.store.jobs import events_of
from scheduler.store.models import NodeRow
from scheduler.store.nodes import get_node, set_drained
from scheduler.store.snapshot import build_snapshot
from tests.checks import assert_no_attempt_overlap
from tests.factories import (
    RETRY,
    T0,
    add_job,
    exited,
    launch_failed,
    node_facts,
    place_job,
    register,
    report,
    sync,
)

N1 = node_facts("n1", gpus=2)


class Cluster:
    """n1 and a clock; ``end(job, how)`` runs the job's next attempt on n1 and ends it."""

    def __init__(self, db: Database, retry: RetrySettings = RETRY) -> None:
        self.db, self.retry = db, retry
        self.seconds = count(start=10, step=100)
        register(db, N1)

    def now(self) -> datetime:
        return T0 + timedelta(seconds=next(self.seconds))

    def job(self) -> int:
        with self.db.write() as session:
            return add_job(session, max_retries=10).id

    def end(self, job_id: int, how: str) -> None:
        """``how``: ``fail``, ``fail127``, ``launch``, ``ok`` or ``stopped`` (preempted).

        Placed by hand: neither a retry's backoff nor a drain stops it (the policy's).
        """
        attempt = place_job(self.db, job_id, {"n1": [0]}, self.now())
        endings: dict[str, AttemptReport] = {
            "fail": exited(attempt, 1),
            "fail127": exited(attempt, 127),
            "launch": launch_failed(attempt),
            "ok": exited(attempt, 0),
            "stopped": exited(attempt, -15, stopped_by_agent=True),
        }
        if how != "launch":
            sync(self.db, N1, report(attempt), now=self.now(), retry=self.retry)
        sync(self.db, N1, endings[how], now=self.now(), retry=self.retry)

    def node(self) -> NodeRow:
        with self.db.read() as session:
            return get_node(session, "n1")


def test_failures_of_two_jobs_in_a_row_drain_the_node(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = Cluster(db)
    first, second = cluster.job(), cluster.job()
    cluster.end(first, "fail")
    cluster.end(second, "launch")
    assert not cluster.node().drained
    with caplog.at_level(logging.WARNING, logger="corral.store.node_health"):
        cluster.end(second, "fail127")
    node = cluster.node()
    reason = f"drained: 3 attempts of 2 jobs failed here in a row (last: job {second} exit 127)"
    assert (node.drained, node.drain_reason) == (True, reason)
    assert f"node n1 {reason}" in caplog.text
    assert sync(db, N1, now=cluster.now()).node_state == "drained"
    with db.read() as session:
        (view,) = build_snapshot(session, cluster.now()).nodes
        assert view.state is NodeState.DRAINED
        assert events_of(session, second)[-2].message == f"node n1 {reason}"
    assert_no_attempt_overlap(db)


def test_one_job_failing_alone_does_not_drain_the_node(db: Database) -> None:
    cluster = Cluster(db)
    job_id = cluster.job()
    for _ in range(5):
        cluster.end(job_id, "fail")
    assert not cluster.node().drained  # the job's own fault; its retry rules handle it


def test_a_success_resets_the_count(db: Database) -> None:
    cluster = Cluster(db)
    a, b, c = cluster.job(), cluster.job(), cluster.job()
    cluster.end(a, "fail")
    cluster.end(b, "fail")
    cluster.end(c, "ok")
    cluster.end(a, "fail")
    cluster.end(b, "fail")
    assert not cluster.node().drained  # 2 in a row since the success
    cluster.end(a, "fail")
    assert cluster.node().drained


def test_stopped_attempts_neither_count_nor_reset(db: Database) -> None:
    cluster = Cluster(db)
    a, b, c = cluster.job(), cluster.job(), cluster.job()
    cluster.end(a, "fail")
    cluster.end(c, "stopped")  # preempted: says nothing about the node
    cluster.end(b, "fail")
    cluster.end(c, "stopped")
    cluster.end(a, "fail")
    assert cluster.node().drained


def test_an_undrain_starts_the_count_afresh(db: Database) -> None:
    cluster = Cluster(db)
    a, b = cluster.job(), cluster.job()
    for job_id in (a, b, a):
        cluster.end(job_id, "fail")
    assert cluster.node().drained
    with db.write() as session:  # an operator fixed it
        set_drained(session, "n1", False, None, cluster.now())
    cluster.end(b, "fail")
    cluster.end(a, "fail")
    assert not cluster.node().drained
    cluster.end(b, "fail")
    assert cluster.node().drained


def test_an_operators_drain_reason_is_kept(db: Database) -> None:
    cluster = Cluster(db)
    a, b = cluster.job(), cluster.job()
    with db.write() as session:
        set_drained(session, "n1", True, "new NVLink board", cluster.now())
    for job_id in (a, b, a):  # attempts that still run on the drained node fail
        cluster.end(job_id, "fail")
    node = cluster.node()
    assert (node.drained, node.drain_reason) == (True, "new NVLink board")


@pytest.mark.parametrize(
    ("settings", "drained"),
    [
        (RetrySettings(drain_after_failures=0), False),  # never
        (RetrySettings(drain_after_failures=2, drain_after_jobs=2), True),
        (RetrySettings(drain_after_failures=2, drain_after_jobs=3), False),
    ],
)
def test_the_numbers_are_server_settings(
    db: Database, settings: RetrySettings, drained: bool
) -> None:
    cluster = Cluster(db, retry=settings)
    a, b = cluster.job(), cluster.job()
    cluster.end(a, "fail")
    cluster.end(b, "fail")
    assert cluster.node().drained is drained
