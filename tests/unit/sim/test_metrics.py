"""The recorder's definitions, on states built by hand."""

from __future__ import annotations

import pytest

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import GpuRef, QueueView, ResourceRequest
from scheduler.sim.cluster import SimCluster, parse_shape
from scheduler.sim.metrics import Recorder, idle_usable, percentile, shares_by_queue
from scheduler.sim.state import CostModel, SimState

from .factories import trace_job


def _state(shape: str, queues: tuple[QueueView, ...] = (QueueView("q"),)) -> SimState:
    return SimState(SimCluster(parse_shape(shape)), queues, CostModel())


def _start(state: SimState, job_id: int, node: int, indices: list[int], now: float) -> None:
    name = state.cluster.views()[node].name
    gpus = tuple(GpuRef(name, i) for i in indices)
    state.start(Placement(job_id, (name,), gpus), now)


def test_idle_usable_the_docstring_example() -> None:
    # nodes with 3 and 1 free GPUs; pending jobs of 2 and 8 GPUs -> 3 usable
    state = _state("2x4")
    state.arrive(trace_job(1, 1), ResourceRequest(1), 0.0)
    state.arrive(trace_job(2, 3), ResourceRequest(3), 0.0)
    _start(state, 1, 0, [0], 0.0)
    _start(state, 2, 1, [0, 1, 2], 0.0)
    state.arrive(trace_job(3, 2), ResourceRequest(2), 0.0)
    state.arrive(trace_job(4, 8), ResourceRequest(8), 0.0)
    assert idle_usable(state) == 3


def test_idle_usable_multi_node_and_the_pending_cap() -> None:
    state = _state("3x4")
    state.arrive(trace_job(1, 8), ResourceRequest(4, nodes=2), 0.0)
    assert idle_usable(state) == 8  # capped at the 8 GPUs it asks for, of 12 idle
    state.arrive(trace_job(2, 1), ResourceRequest(1), 0.0)
    _start(state, 2, 0, [0], 0.0)
    state.arrive(trace_job(3, 1), ResourceRequest(1), 0.0)
    _start(state, 3, 1, [0], 0.0)
    assert idle_usable(state) == 0  # one idle node left: the 2-node job cannot use it


def test_idle_usable_respects_gpu_types() -> None:
    state = SimState(SimCluster(parse_shape("1x4:T4,1x4:V100")), (QueueView("q"),), CostModel())
    state.arrive(trace_job(1, 2, gpu_type="V100"), ResourceRequest(2, gpu_type="v100"), 0.0)
    assert idle_usable(state) == 2


def test_guarantee_violation_and_shares_over_time() -> None:
    # queue g (guarantee 2) waits with a 1-GPU job from 10 to 30 while q holds both GPUs
    queues = (QueueView("g", guaranteed_gpus=2), QueueView("q"))
    state = _state("1x2", queues)
    recorder = Recorder(state, start=0.0, sample_interval_s=10.0)
    state.arrive(trace_job(1, 2, queue="q"), ResourceRequest(2), 0.0)
    _start(state, 1, 0, [0, 1], 0.0)
    recorder.advance(10.0)
    state.arrive(trace_job(2, 1, queue="g"), ResourceRequest(1), 10.0)
    recorder.advance(30.0)
    totals = recorder.totals
    assert totals.queues["g"].violation_s == 20.0
    assert totals.queues["g"].demand_s == 20.0
    assert totals.queues["g"].shortfall_gpu_s == 20.0  # min(2, 0 + 1) - 0 GPUs for 20 s
    assert totals.queues["q"].held_gpu_s == 60.0
    assert totals.allocated_gpu_s == 60.0
    assert totals.idle_demand_gpu_s == 0.0
    series = recorder.series
    assert series.t == [0.0, 10.0, 20.0]
    assert series.held["q"] == [2, 2, 2]
    assert series.fair["g"] == [0.0, pytest.approx(1.0), pytest.approx(1.0)]
    assert series.pending["g"] == [0, 1, 1]
    g = shares_by_queue(totals, 2, series)["g"]
    assert g["busy_samples"] == 2
    assert g["held_gpus_when_busy"] == 0.0
    assert g["fair_share_gpus_when_busy"] == pytest.approx(1.0)
    assert g["below_fair_share_gpus_when_busy"] == pytest.approx(1.0)
    assert shares_by_queue(totals, 2, series)["q"]["share"] == pytest.approx(1.0)


def test_percentile() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([], 0.5) == 0.0
