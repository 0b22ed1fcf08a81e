"""The idle loop: attempts whose GPUs all stayed under the threshold for the window are
flagged (``idle_since``), and stopped when their queue says ``idle_action: stop``.

Threshold 5 %, window 30 min; both jobs start at T0 on n1.
- job A (queue ``default``, flag only) on GPU 0: 2 % at +100 s, 80 % at +1500 s, 1 % at
  +1900 s. At +2000 s it was busy 500 s ago: not idle. At +3400 s: idle since +1500 s.
- job B (queue ``lazy``, stop) on GPU 1: 1 %, 0 %, 3 %. At +1000 s it is too young to
  judge; at +2000 s it is idle since its start and is stopped, with a reason.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from scheduler.domain.spec import QueuePatch
from scheduler.loops.idle import check_idle
from scheduler.runtime import Runtime
from scheduler.services.queues import get_queue, update_queue
from scheduler.settings import ServerSettings
from scheduler.store.db import Database
from scheduler.store.jobs import get_job
from scheduler.store.models import GpuRow, GpuSampleRow
from scheduler.store.views import job_detail
from tests.factories import add_job, add_queue, at, node_facts, place_job, report, sync

N1 = node_facts("n1", gpus=2)


@pytest.fixture
def rt(db: Database, tmp_path: Path) -> Runtime:
    settings = ServerSettings(data_dir=tmp_path, database_url=db.url)
    settings = replace(settings, idle_util_pct=5.0, idle_window_s=1800.0)
    return Runtime(db=db, settings=settings)


def _samples(db: Database, index: int, *readings: tuple[float, float]) -> None:
    with db.write() as session:
        gpu_id = session.scalar(select(GpuRow.id).where(GpuRow.uuid == f"GPU-n1-{index}"))
        for seconds, pct in readings:
            session.add(GpuSampleRow(gpu_id=gpu_id, at=at(seconds), utilization_pct=pct))


def _start(db: Database) -> tuple[int, int]:
    sync(db, N1, now=at(-10))
    with db.write() as session:
        add_queue(session, "default")
        add_queue(session, "lazy", idle_action="stop")
        a = add_job(session, gpus=1, now=at(-5)).id
        b = add_job(session, gpus=1, queue="lazy", now=at(-5)).id
    attempts = [place_job(db, a, {"n1": [0]}, at(0)), place_job(db, b, {"n1": [1]}, at(0))]
    sync(db, N1, *(report(x) for x in attempts), now=at(0))
    _samples(db, 0, (100, 2.0), (1500, 80.0), (1900, 1.0))
    _samples(db, 1, (100, 1.0), (1000, 0.0), (1900, 3.0))
    return a, b


def _job(rt: Runtime, job_id: int) -> tuple[str, object, list[str]]:
    with rt.db.read() as session:
        view = job_detail(session, get_job(session, job_id), now=at(4000))
    assert view.events is not None
    return view.status, view.idle_since, [e.message for e in view.events]


def test_idle_attempts_are_flagged_and_stopped_by_their_queues_policy(rt: Runtime) -> None:
    a, b = _start(rt.db)
    assert check_idle(rt, at(1000)) == 0  # too young to judge
    assert _job(rt, a)[:2] == ("running", None)
    assert _job(rt, b)[:2] == ("running", None)

    assert check_idle(rt, at(2000)) == 1
    assert _job(rt, a)[:2] == ("running", None)  # busy 500 s ago
    status, idle_since, messages = _job(rt, b)
    assert (status, idle_since) == ("stopping", at(0))
    assert any("stopped as idle" in m and "lazy" in m for m in messages), messages

    assert check_idle(rt, at(3400)) == 0  # A is only flagged: its queue says none
    assert _job(rt, a)[:2] == ("running", at(1500))


def test_a_gpu_busy_again_clears_the_flag(rt: Runtime) -> None:
    a, _ = _start(rt.db)
    check_idle(rt, at(3400))
    assert _job(rt, a)[1] == at(1500)
    _samples(rt.db, 0, (3450, 95.0))
    check_idle(rt, at(3500))
    assert _job(rt, a)[1] is None


def test_a_queues_idle_action_is_set_shown_and_validated(rt: Runtime) -> None:
    with rt.db.write() as session:
        add_queue(session, "default")
    assert get_queue(rt, "default").idle_action == "none"
    assert update_queue(rt, "default", QueuePatch(idle_action="stop")).idle_action == "stop"
    assert update_queue(rt, "default", QueuePatch(weight=2)).idle_action == "stop"
    with pytest.raises(ValidationError, match="idle_action"):
        QueuePatch.model_validate({"idle_action": "kill"})
