"""Properties of any replay, on random small traces (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.sim.cluster import parse_shape
from scheduler.sim.rows import TraceJob
from scheduler.sim.run import SimConfig, replay
from scheduler.sim.state import CostModel

from .factories import PreemptAt, fifo, trace_job

jobs_strategy = st.lists(
    st.tuples(
        st.integers(0, 500),  # submit (s)
        st.sampled_from([1, 1, 1, 2, 4, 8, 16]),  # GPUs
        st.integers(0, 400),  # duration (s)
        st.sampled_from(["a", "b"]),
    ),
    min_size=1,
    max_size=25,
)


def _trace(rows: list[tuple[int, int, int, str]]) -> list[TraceJob]:
    jobs = [trace_job(i, g, d, at=s, queue=q) for i, (s, g, d, q) in enumerate(rows, start=1)]
    return sorted(jobs, key=lambda j: (j.submitted_at, j.job_id))


@settings(max_examples=60, deadline=None)
@given(jobs_strategy)
def test_greedy_fifo_finishes_everything_and_wastes_nothing(
    rows: list[tuple[int, int, int, str]],
) -> None:
    jobs = _trace(rows)
    result = replay(jobs, SimConfig(parse_shape("3x8")), fifo(), may_preempt=False)
    s = result.summary
    assert (s.jobs, s.unfinished, s.rejected) == (len(jobs), 0, 0)
    assert s.jct_s.mean >= s.jct_lower_bound_s - 1e-9
    assert s.makespan_s >= s.makespan_lower_bound_s - 1e-9
    work = sum(j.duration_s * j.gpus for j in jobs)
    state = result.state
    assert state is not None
    assert state.cluster.free_gpus == state.cluster.capacity
    assert s.work_gpu_s == pytest.approx(work)
    allocated = s.gpu_allocation * s.gpus * s.makespan_s
    assert allocated == pytest.approx(work, abs=1e-6)  # without preemption, all is work
    assert s.idle_while_demand_gpu_s == 0.0  # greedy starts whatever fits
    assert all(j.queued_s >= 0 for j in state.done)


@settings(max_examples=40, deadline=None)
@given(jobs_strategy, st.integers(0, 600))
def test_free_preemption_loses_nothing_and_costly_preemption_only_delays(
    rows: list[tuple[int, int, int, str]], at: int
) -> None:
    jobs = _trace(rows)
    victim = jobs[0].job_id
    free = replay(jobs, SimConfig(parse_shape("3x8")), PreemptAt(float(at), victim))  # type: ignore[arg-type]
    assert free.summary.lost_gpu_s == 0.0
    assert free.summary.jobs == len(jobs)
    costly_config = SimConfig(parse_shape("3x8"), cost=CostModel(60.0, 100.0))
    costly = replay(jobs, costly_config, PreemptAt(float(at), victim))  # type: ignore[arg-type]
    assert costly.summary.jobs == len(jobs)
    state = costly.state
    assert state is not None
    first = state.jobs[victim]
    if first.preemptions:
        assert first.lost_gpu_s > 0 or first.trace.duration_s == 0
        assert first.ended_at is not None
        assert first.ended_at - first.trace.submitted_at >= first.trace.duration_s + 60
