"""Accounting: a scripted day on one node whose GPU-hours are computed by hand.

Window ``[T0, T0+4h)``. Node n1 has 4 GPUs.
- job A (queue ml, alice, 2 GPUs 0-1): placed at -1h, ends at +1h. Allocated in the
  window: 2 x 1h = 2.0. Samples in it: GPU0 60 %, 40 % (mean 50), GPU1 100 %; a 0 %
  sample of GPU0 before the window does not count. Used: 1h x 0.5 + 1h x 1.0 = 1.5.
- job B (queue cv, bob, 1 GPU 2): placed at +1h, checkpoint at +2h, preempted at +3h.
  Allocated 2.0, used 0 (no samples), lost 1.0 (+2h..+3h).
- job C (queue cv, bob, 1 GPU 3): placed at +3h30m, fails at +3h45m. Allocated 0.25.
- job D (queue ml, alice, 1 GPU 2): placed at +3h30m, still running at +4h: 0.5,
  samples 20 % -> used 0.1.
- job E (queue ml) ran and ended before the window: not counted.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from scheduler.domain.status import TerminationReason
from scheduler.store.accounting import usage_report
from scheduler.store.attempts import request_stop
from scheduler.store.db import Database
from scheduler.store.models import AttemptRow, GpuRow, GpuSampleRow, JobRow
from tests.factories import add_job, add_queue, at, exited, node_facts, place_job, report, sync

H = 3600.0
N1 = node_facts("n1", gpus=4)


def _job(db: Database, queue: str, user: str, gpus: int, now: datetime) -> int:
    with db.write() as session:
        job = add_job(session, gpus=gpus, queue=queue, now=now)
        job.submitted_by = user
        return job.id


def _run(
    db: Database, queue: str, user: str, gpus: list[int], start_h: float, *running: int
) -> int:
    """A job placed on n1's ``gpus`` and reported running at ``start_h`` (with the
    attempts ``running`` there already); its attempt id."""
    job_id = _job(db, queue, user, len(gpus), at(start_h * H - 60))
    attempt_id = place_job(db, job_id, {"n1": gpus}, at(start_h * H))
    sync(db, N1, *(report(a) for a in (*running, attempt_id)), now=at(start_h * H))
    return attempt_id


def _samples(db: Database, index: int, *readings: tuple[float, float]) -> None:
    """(hours from T0, utilisation %) samples of n1's GPU ``index``."""
    with db.write() as session:
        gpu_id = session.scalar(select(GpuRow.id).where(GpuRow.uuid == f"GPU-n1-{index}"))
        assert gpu_id is not None
        for hours, pct in readings:
            session.add(GpuSampleRow(gpu_id=gpu_id, at=at(hours * H), utilization_pct=pct))


def _script(db: Database) -> None:
    sync(db, N1, now=at(-3 * H))
    with db.write() as session:
        add_queue(session, "default")
        add_queue(session, "ml")
        add_queue(session, "cv")
    old = _run(db, "ml", "alice", [0], -3)  # job E, over before the window
    sync(db, N1, exited(old, 0), now=at(-2 * H))

    a = _run(db, "ml", "alice", [0, 1], -1)
    _samples(db, 0, (-0.5, 0.0), (10 / 60, 60.0), (20 / 60, 40.0))
    _samples(db, 1, (0.5, 100.0))
    sync(db, N1, exited(a, 0), now=at(1 * H))

    b = _run(db, "cv", "bob", [2], 1)
    with db.write() as session:
        attempt = session.get(AttemptRow, b)
        assert attempt is not None
        attempt.last_checkpoint_at = at(2 * H)
        request_stop(session, attempt, TerminationReason.PREEMPTED, at(2.9 * H), "preempted")
    sync(db, N1, exited(b, -15, stopped_by_agent=True), now=at(3 * H))

    c = _run(db, "cv", "bob", [3], 3.5)
    d = _run(db, "ml", "alice", [2], 3.5, c)
    sync(db, N1, exited(c, 1), report(d), now=at(3.75 * H))
    _samples(db, 2, (3.6, 20.0), (3.9, 20.0))


def test_usage_by_queue_matches_the_hand_computed_gpu_hours(db: Database) -> None:
    _script(db)
    with db.read() as session:
        failed = session.scalars(select(JobRow).where(JobRow.status == "failed")).all()
        assert len(failed) == 1
        entries = {e.key: e for e in usage_report(session, "queue", at(0), at(4 * H))}
    assert sorted(entries) == ["cv", "ml"]
    ml, cv = entries["ml"], entries["cv"]
    assert ml.gpu_hours_allocated == pytest.approx(2.0 + 0.5)
    assert ml.gpu_hours_used == pytest.approx(1.5 + 0.1)
    assert ml.gpu_hours_lost_to_preemption == 0
    assert (ml.jobs_run, ml.jobs_failed, ml.jobs_preempted) == (2, 0, 0)
    assert cv.gpu_hours_allocated == pytest.approx(2.0 + 0.25)
    assert cv.gpu_hours_used == 0
    assert cv.gpu_hours_lost_to_preemption == pytest.approx(1.0)
    assert (cv.jobs_run, cv.jobs_failed, cv.jobs_preempted) == (2, 1, 1)


def test_usage_by_user_and_a_narrower_window(db: Database) -> None:
    _script(db)
    with db.read() as session:
        users = {e.key: e for e in usage_report(session, "user", at(0), at(4 * H))}
        late = {e.key: e for e in usage_report(session, "user", at(2.5 * H), at(4 * H))}
    assert users["alice"].gpu_hours_allocated == pytest.approx(2.5)
    assert users["bob"].gpu_hours_allocated == pytest.approx(2.25)
    # from +2h30m: bob's B holds 0.5 h (all after its checkpoint, lost), C 0.25 h
    assert late["bob"].gpu_hours_allocated == pytest.approx(0.75)
    assert late["bob"].gpu_hours_lost_to_preemption == pytest.approx(0.5)
    assert late["alice"].gpu_hours_allocated == pytest.approx(0.5)
    assert late["alice"].jobs_run == 1
