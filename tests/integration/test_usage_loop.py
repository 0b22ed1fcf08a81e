"""The usage loop: each queue's decayed usage, advanced from allocation times."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from scheduler.loops.usage import update_usage, usage_loop
from scheduler.runtime import Runtime
from scheduler.settings import PolicyParams, ServerSettings
from scheduler.store.db import Database
from scheduler.store.jobs import latest_attempt
from scheduler.store.queues import get_queue
from tests.factories import add_job, add_queue, at, exited, node_facts, place, placement, sync

HALF_LIFE_S = 60.0


@pytest.fixture
def rt(db: Database, tmp_path: Path) -> Runtime:
    params = replace(PolicyParams(), usage_half_life_s=HALF_LIFE_S)
    settings = ServerSettings(data_dir=tmp_path, database_url=db.url, params=params)
    return Runtime(db=db, settings=settings)


def _usage(rt: Runtime) -> dict[str, float]:
    with rt.db.read() as session:
        return {n: get_queue(session, n).usage_gpu_s for n in ("ml", "vision", "solo", "idle")}


def test_usage_decays_and_accrues_each_queues_gpu_seconds(rt: Runtime) -> None:
    n1 = node_facts("n1", gpus=4)
    sync(rt.db, n1)
    with rt.db.write() as session:
        for name, parent in (("ml", None), ("vision", "ml"), ("solo", None), ("idle", None)):
            add_queue(session, name, parent=parent)  # usage counted from T0
        long = add_job(session, gpus=2, queue="vision").id
        short = add_job(session, gpus=1, queue="solo").id
    with rt.db.write() as session:
        place(session, placement(long, {"n1": [0, 1]}), now=at(0))
        place(session, placement(short, {"n1": [2]}), now=at(10))
        attempt = latest_attempt(session, short)
        assert attempt is not None
    sync(rt.db, n1, exited(attempt.id, 0), now=at(20))  # started and ended between passes

    assert update_usage(rt, at(30)) == 4
    assert _usage(rt) == pytest.approx({"ml": 60.0, "vision": 60.0, "solo": 10.0, "idle": 0.0})

    update_usage(rt, at(90))  # one half-life later: halved, plus 2 GPUs x 60 s
    assert _usage(rt) == pytest.approx({"ml": 150.0, "vision": 150.0, "solo": 5.0, "idle": 0.0})

    assert update_usage(rt, at(90)) == 0  # a second pass for the same moment counts nothing
    assert update_usage(rt, at(80)) == 0  # nor does a clock that went back
    assert _usage(rt)["vision"] == pytest.approx(150.0)


def test_a_queue_never_counted_starts_counting_at_the_first_pass(rt: Runtime) -> None:
    with rt.db.write() as session:
        add_queue(session, "solo").usage_updated_at = None  # as the migration leaves old ones
    assert update_usage(rt, at(100)) == 1
    with rt.db.read() as session:
        queue = get_queue(session, "solo")
        assert (queue.usage_gpu_s, queue.usage_updated_at) == (0.0, at(100))


def test_the_loop_runs_every_usage_interval(rt: Runtime) -> None:
    loop = usage_loop(rt)
    assert (loop.name, loop.interval_s) == ("usage", rt.settings.usage_interval_s)
    assert rt.settings.usage_interval_s == 30.0
    with rt.db.write() as session:
        add_queue(session, "solo")
    assert loop.run_once() == 1  # now is the wall clock, after T0
