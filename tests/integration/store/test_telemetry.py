"""Telemetry history on each backend: samples roll up into 1-minute and 1-hour averages
exactly once, pruning keeps each level to its window (and never drops what is not yet
rolled up), series come back at the finest resolution that reaches their start, and the
tables stay bounded however long the server runs.

Samples go in through ``record_samples``, as an agent sync stores them; the clock is
explicit (``T0`` is 12:00:00, a whole hour).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from scheduler.domain.sync import GpuSample, HostSample
from scheduler.store.db import Database
from scheduler.store.models import GpuRollupRow, GpuRow, HostRollupRow
from scheduler.store.nodes import get_node, record_samples
from scheduler.store.telemetry import (
    HOUR_S,
    MINUTE_S,
    RAW,
    Retention,
    attempt_series,
    gpu_series,
    mean_utilization,
    prune,
    roll_up,
    row_counts,
)
from tests.factories import T0, add_job, node_facts, place_job, register

N1 = node_facts("n1", gpus=2)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sample(db: Database, when: datetime, util: float, *, gpu1: float | None = None) -> None:
    """GPU 0 at ``util`` % (GPU 1 at ``gpu1`` if given), the host at ``util`` % CPU."""
    gpus = [GpuSample(index=0, utilization_pct=util, memory_used_mib=1000, power_w=100.0)]
    if gpu1 is not None:
        gpus.append(GpuSample(index=1, utilization_pct=gpu1))
    with db.write() as session:
        node = get_node(session, "n1")
        record_samples(session, node, HostSample(cpu_pct=util, load1=1.0), gpus, when)


def rollups(db: Database, resolution_s: int) -> list[tuple[datetime, int, float | None, float]]:
    """GPU 0's buckets at one level: (start, samples, avg util, max util)."""
    with db.read() as session:
        gpu0 = session.scalars(select(GpuRow).where(GpuRow.index == 0)).one()
        rows = session.scalars(
            select(GpuRollupRow)
            .where(GpuRollupRow.gpu_id == gpu0.id, GpuRollupRow.resolution_s == resolution_s)
            .order_by(GpuRollupRow.bucket_start)
        )
        return [
            (r.bucket_start, r.samples, r.utilization_avg_pct, r.utilization_max_pct or 0.0)
            for r in rows
        ]


def run_rollup(db: Database, now: datetime) -> int:
    with db.write() as session:
        return roll_up(session, now)


@pytest.fixture
def cluster(db: Database) -> Database:
    register(db, N1)
    return db


def test_minute_and_hour_buckets_match_the_hand_computed_averages(cluster: Database) -> None:
    db = cluster
    sample(db, at(10), 20.0)
    sample(db, at(40), 60.0)
    sample(db, at(70), 100.0)  # the next minute
    sample(db, at(3600 + 5), 50.0)  # the next hour: closes the first one
    run_rollup(db, at(3600 + 60 + 31))  # minute 13:00 closed 31 s ago

    assert rollups(db, MINUTE_S) == [
        (at(0), 2, 40.0, 60.0),
        (at(60), 1, 100.0, 100.0),
        (at(3600), 1, 50.0, 50.0),
    ]
    # the hour: (2 * 40 + 100) / 3 = 60, weighted by samples, not the mean of means (70)
    assert rollups(db, HOUR_S) == [(at(0), 3, 60.0, 100.0)]
    with db.read() as session:
        host = session.scalars(
            select(HostRollupRow).where(HostRollupRow.resolution_s == HOUR_S)
        ).one()
    assert (host.samples, host.cpu_avg_pct, host.cpu_max_pct) == (3, 60.0, 100.0)


def test_open_and_settling_buckets_wait_and_a_second_pass_adds_nothing(cluster: Database) -> None:
    db = cluster
    sample(db, at(10), 20.0)
    assert run_rollup(db, at(59)) == 0  # the minute is still open
    assert run_rollup(db, at(60 + 29)) == 0  # closed, but a late commit may still land
    sample(db, at(50), 60.0)  # ... like this one
    assert run_rollup(db, at(60 + 30)) > 0
    first = rollups(db, MINUTE_S)
    assert first == [(at(0), 2, 40.0, 60.0)]

    assert run_rollup(db, at(60 + 30)) == 0  # twice: nothing counted twice
    assert run_rollup(db, at(60 + 45)) == 0
    sample(db, at(65), 80.0)
    run_rollup(db, at(120 + 30))  # incremental: only the new minute is written
    assert rollups(db, MINUTE_S) == [*first, (at(60), 1, 80.0, 80.0)]


def test_a_pass_that_crashes_leaves_nothing_and_the_next_one_counts_once(
    cluster: Database,
) -> None:
    db = cluster
    for s in range(0, 600, 5):
        sample(db, at(s), float(s % 100))

    class Crash(Exception):
        pass

    with pytest.raises(Crash), db.write() as session:
        assert roll_up(session, at(3600)) > 0
        raise Crash  # after the rows went in, before the commit
    assert rollups(db, MINUTE_S) == []

    run_rollup(db, at(3600))
    run_rollup(db, at(3600))
    buckets = rollups(db, MINUTE_S)
    assert len(buckets) == 10
    assert sum(n for _, n, _, _ in buckets) == 120  # every sample exactly once


def test_prune_keeps_each_level_to_its_window_but_never_unrolled_samples(
    cluster: Database,
) -> None:
    db = cluster
    retention = Retention(samples_s=630, minute_s=2 * HOUR_S + 30, hour_s=3 * HOUR_S + 30)
    for s in range(0, 4 * HOUR_S, 60):
        sample(db, at(s), 50.0)
    now = at(4 * HOUR_S + 30)  # 16:00:30: the minute 15:59 has just settled
    with db.write() as session:
        assert prune(session, now, retention) == 0  # nothing rolled up yet: all kept
    run_rollup(db, now)
    with db.write() as session:
        prune(session, now, retention)
        counts = row_counts(session)
    assert counts["gpu_samples"] == 10  # the last 10 minutes
    assert counts["gpu_rollups/60"] == 120  # the last 2 hours
    assert counts["gpu_rollups/3600"] == 3  # 13:00 to 15:00; 12:00 is past its window
    assert counts["host_rollups/3600"] == 3


def test_series_come_at_the_finest_resolution_that_reaches_their_start(
    cluster: Database,
) -> None:
    db = cluster
    retention = Retention(samples_s=HOUR_S, minute_s=6 * HOUR_S, hour_s=30 * HOUR_S)
    for s in range(0, 10 * HOUR_S, 60):
        sample(db, at(s), 10.0 if s < 5 * HOUR_S else 90.0, gpu1=30.0)
    sample(db, at(10 * HOUR_S), 90.0, gpu1=30.0)
    now = at(10 * HOUR_S + 20)  # 22:00:20: the minute 21:59 is still settling
    run_rollup(db, now)
    with db.write() as session:
        prune(session, now, retention)
    with db.read() as session:
        ids = [g.id for g in session.scalars(select(GpuRow).order_by(GpuRow.index))]

        def series(start_s: float) -> tuple[int, list[tuple[int, float | None]]]:
            resolution, points = gpu_series(
                session, ids, at(start_s), now, now=now, retention=retention
            )
            return resolution, [(p.resolution_s, p.utilization_pct) for p in points[ids[0]]]

        resolution, points = series(10 * HOUR_S - 600)  # since 21:50: raw samples
        assert resolution == RAW
        assert points == [(RAW, 90.0)] * 11  # 21:50 to 22:00, one a minute

        resolution, points = series(6 * HOUR_S)  # 4 h ago: minutes, then the newest raw
        assert resolution == MINUTE_S
        assert points == [(MINUTE_S, 90.0)] * 239 + [(RAW, 90.0)] * 2  # 18:00-21:58, then raw

        resolution, points = series(0)  # 10 h ago: hours, then minutes, then raw
        assert resolution == HOUR_S
        hours = [(HOUR_S, 10.0)] * 5 + [(HOUR_S, 90.0)] * 4  # 12:00 to 20:00
        assert points == hours + [(MINUTE_S, 90.0)] * 59 + [(RAW, 90.0)] * 2
        _, both = gpu_series(session, ids, at(0), now, now=now, retention=retention)
        assert {p.utilization_pct for p in both[ids[1]]} == {30.0}
        # 5 h at 10 %, 5 h (and one more sample) at 90 %: weighted by samples, not points
        mean = mean_utilization(session, ids[0], at(0), now, now=now, retention=retention)
        assert mean == pytest.approx((300 * 10.0 + 301 * 90.0) / 601)


def test_an_attempts_series_covers_its_gpus_from_start_to_end(cluster: Database) -> None:
    db = cluster
    with db.write() as session:
        job_id = add_job(session, gpus=1).id
    attempt_id = place_job(db, job_id, {"n1": [1]}, at(0))
    for s in range(0, 300, 10):
        sample(db, at(s), 5.0, gpu1=70.0)
    with db.read() as session:
        from scheduler.store.models import AttemptRow

        attempt = session.get(AttemptRow, attempt_id)
        assert attempt is not None
        resolution, start, end, series = attempt_series(
            session, attempt, now=at(300), retention=Retention()
        )
    assert (resolution, start, end) == (RAW, at(0), at(300))
    assert [(g.node, g.index) for g in series] == [("n1", 1)]  # only its own GPU
    assert [p.utilization_pct for p in series[0].points] == [70.0] * 30


def test_rows_stay_bounded_over_weeks_of_samples(cluster: Database) -> None:
    """10 simulated days, a sample every 3 min, rollup and prune every hour: each level
    settles at its window's worth of rows while the samples keep coming."""
    db = cluster
    retention = Retention(samples_s=2 * HOUR_S, minute_s=1 * 86400, hour_s=3 * 86400)
    step_s, pass_s, days = 180, HOUR_S, 10
    history: list[dict[str, int]] = []
    for p in range(days * 86400 // pass_s):
        with db.write() as session:
            node = get_node(session, "n1")
            for s in range(p * pass_s, (p + 1) * pass_s, step_s):
                gpus = [GpuSample(index=i, utilization_pct=50.0) for i in range(2)]
                record_samples(session, node, HostSample(cpu_pct=5.0), gpus, at(s))
        now = at((p + 1) * pass_s)
        with db.write() as session:
            roll_up(session, now)
            prune(session, now, retention)
            history.append(row_counts(session))

    per_gpu_bound = {
        "gpu_samples": (retention.samples_s + pass_s) / step_s + 1,
        "gpu_rollups/60": (retention.minute_s + HOUR_S + pass_s) / step_s + 1,
        "gpu_rollups/3600": (retention.hour_s + 2 * HOUR_S) / HOUR_S + 1,
    }
    late = history[len(history) // 2 :]  # from day 5: past every window
    for table, bound in per_gpu_bound.items():
        assert max(h[table] for h in late) <= 2 * bound, table
        assert late[-1][table] <= max(h[table] for h in late[: len(late) // 2]), table
    hours_kept = 3 * 24 - 2  # the hour window, less the hour still open and settling
    assert late[-1]["gpu_rollups/3600"] >= 2 * hours_kept  # 3 days of history, both GPUs
    assert late[-1]["host_rollups/3600"] >= hours_kept
    samples_taken = 2 * days * 86400 / step_s
    assert sum(late[-1][t] for t in per_gpu_bound) < samples_taken / 5
