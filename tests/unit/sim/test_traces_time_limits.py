"""User time limits for trace jobs: the model, the snapshot's fields, and timeouts."""

from __future__ import annotations

import pytest

from scheduler.domain.decisions import Decisions
from scheduler.domain.snapshot import Snapshot
from scheduler.sim.cluster import parse_shape
from scheduler.sim.run import SimConfig, SimResult, replay
from scheduler.sim.state import CostModel, SimState
from scheduler.sim.traces import TimeLimits

from .factories import PreemptAt, fifo, trace_job


def _state(result: SimResult) -> SimState:
    assert result.state is not None
    return result.state


@pytest.mark.parametrize(
    ("text", "label"),
    [("none", "none"), ("exact", "x1"), ("x2", "x2"), ("X5", "x5"), ("x1-10", "x1-10")],
)
def test_parse_and_label(text: str, label: str) -> None:
    assert TimeLimits.parse(text).label == label


@pytest.mark.parametrize("text", ["", "2", "x", "x0", "x-1", "x3-2", "xnan", "x1-", "twice"])
def test_parse_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match="time limits"):
        TimeLimits.parse(text)


@pytest.mark.parametrize(
    ("spec", "duration", "limit"),
    [
        ("none", 1000.0, None),
        ("exact", 1000.0, 1020),  # 16.7 minutes -> 17
        ("exact", 60.0, 60),  # a whole minute stays
        ("exact", 61.0, 120),
        ("exact", 0.0, 60),  # at least a minute
        ("x2", 1000.0, 2040),  # the docstring's example
        ("x5", 3600.0, 18000),
        ("x0.5", 1000.0, 540),
    ],
)
def test_limit_is_duration_times_factor_in_whole_minutes_up(
    spec: str, duration: float, limit: int | None
) -> None:
    assert TimeLimits.parse(spec).limit_s(trace_job(1, duration_s=duration)) == limit


def test_drawn_factors_are_within_bounds_per_job_and_seeded() -> None:
    jobs = [trace_job(i, duration_s=600.0) for i in range(1, 201)]
    limits = TimeLimits.parse("x1-10", seed=3)
    drawn = [limits.limit_s(j) for j in jobs]
    assert all(d is not None and 600 <= d <= 6000 for d in drawn)
    assert len(set(drawn)) > 50  # a spread, not one factor
    assert drawn == [TimeLimits.parse("x1-10", seed=3).limit_s(j) for j in jobs]
    assert drawn[::-1] == [limits.limit_s(j) for j in reversed(jobs)]  # order does not matter
    assert drawn != [TimeLimits.parse("x1-10", seed=4).limit_s(j) for j in jobs]


class Recording:
    """FIFO that remembers every snapshot it was shown."""

    def __init__(self) -> None:
        self.inner = fifo()
        self.name = "recording"
        self.seen: list[Snapshot] = []

    def decide(self, snapshot: Snapshot) -> Decisions:
        self.seen.append(snapshot)
        return self.inner.decide(snapshot)


def test_the_limit_is_in_the_pending_and_running_views() -> None:
    # 2 GPUs: job 1 (2 GPUs, 100 s) runs 0-100 while job 2 (1 GPU, 250 s) waits.
    jobs = [trace_job(1, 2, 100, at=0), trace_job(2, 1, 250, at=10)]
    config = SimConfig(parse_shape("1x2"), time_limits=TimeLimits.parse("x2"))
    policy = Recording()
    replay(jobs, config, policy)  # type: ignore[arg-type]  # may preempt: a cycle at 10
    at_10 = next(s for s in policy.seen if s.now == 10.0)
    assert [(r.job_id, r.time_limit_s, r.ends_by) for r in at_10.running] == [(1, 240, 240.0)]
    assert [(p.job_id, p.time_limit_s) for p in at_10.pending] == [(2, 540)]


def test_without_limits_nothing_changes() -> None:
    jobs = [trace_job(1, 2, 100, at=0), trace_job(2, 1, 250, at=10)]
    policy = Recording()
    replay(jobs, SimConfig(parse_shape("1x2")), policy)  # type: ignore[arg-type]
    assert policy.seen
    assert all(j.time_limit_s is None for s in policy.seen for j in (*s.pending, *s.running))


def test_a_job_past_its_limit_is_stopped_as_a_timeout_and_not_requeued() -> None:
    # x0.5: job 1 (1,000 s) gets 540 s and is stopped at 540; job 2 (30 s) gets a
    # minute, starts when the GPU comes free and finishes at 570.
    jobs = [trace_job(1, 1, 1000, at=0), trace_job(2, 1, 30, at=0)]
    config = SimConfig(parse_shape("1x1"), time_limits=TimeLimits.parse("x0.5"))
    result = replay(jobs, config, fifo(), may_preempt=False)
    state = _state(result)
    job = state.jobs[1]
    assert (job.ended_at, job.attempts, job.remaining_s) == (540.0, 1, 460.0)
    assert [j.trace.job_id for j in state.timed_out] == [1]
    assert state.jobs[2].ended_at == 570.0
    assert (result.summary.jobs, result.summary.unfinished) == (1, 1)
    assert any("1 jobs reached their time limit (x0.5)" in n for n in result.notes)


def test_a_restarted_attempt_has_the_same_limit_and_pays_its_overhead_in_it() -> None:
    # Exact limits, checkpoints every 900 s, restart 60 s. Job 1 (2 GPUs, 3,000 s,
    # limit 3,000) is preempted at 800, before its first checkpoint: it keeps nothing.
    # Job 2 (2 GPUs, 500 s) runs 800-1,300; job 1 restarts at 1,300 and would need
    # 60 + 3,000 s, past its 3,000 s limit: it is stopped at 4,300.
    result = _preempted_at_800("exact")
    state = _state(result)
    job = state.jobs[1]
    assert (job.ended_at, job.attempts, job.preemptions) == (4300.0, 2, 1)
    assert [j.trace.job_id for j in state.timed_out] == [1]
    assert [j.trace.job_id for j in state.done] == [2]


def test_a_limit_with_room_for_the_restart_changes_nothing() -> None:
    # As above with x2 limits (6,000 s): job 1 restarts at 1,300 and ends at 4,360.
    result = _preempted_at_800("x2")
    state = _state(result)
    assert state.jobs[1].ended_at == 4360.0
    assert not state.timed_out
    assert result.summary.jobs == 2


def _preempted_at_800(limits: str) -> SimResult:
    """Job 1 (2 GPUs, 3,000 s) on one 2-GPU node, preempted at 800 for job 2 (500 s);
    checkpoints every 900 s, restart 60 s."""
    jobs = [trace_job(1, 2, 3000, at=0), trace_job(2, 2, 500, at=800, priority=5)]
    config = SimConfig(
        parse_shape("1x2"), cost=CostModel(60.0, 900.0), time_limits=TimeLimits.parse(limits)
    )
    return replay(jobs, config, PreemptAt(800.0, job_id=1))  # type: ignore[arg-type]
