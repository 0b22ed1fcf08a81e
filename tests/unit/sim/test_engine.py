"""The event loop on tiny traces whose answers are computed by hand in each test."""

from __future__ import annotations

import pytest

from scheduler.domain.decisions import Decisions, Placement, Preemption
from scheduler.domain.snapshot import GpuRef, QueueView, Snapshot
from scheduler.sim.cluster import parse_shape
from scheduler.sim.engine import MAX_CYCLES_PER_INSTANT
from scheduler.sim.run import PolicyChoice, SimConfig, SimResult, replay, simulate
from scheduler.sim.state import CostModel, SimState

from .factories import PreemptAt, fifo, trace_job


def _state(result: SimResult) -> SimState:
    assert result.state is not None
    return result.state


def test_fifo_on_three_jobs() -> None:
    # One node of 4 GPUs. A (4 GPUs, 100 s) at 0 takes it all; B (2 GPUs, 50 s) at 10
    # and C (2 GPUs, 30 s) at 20 wait and both start when A ends at 100.
    # JCT: A 100, B 150 - 10 = 140, C 130 - 20 = 110 -> mean 116.67; makespan 150.
    jobs = [trace_job(1, 4, 100, at=0), trace_job(2, 2, 50, at=10), trace_job(3, 2, 30, at=20)]
    result = replay(jobs, SimConfig(parse_shape("1x4")), fifo(), may_preempt=False)
    s = result.summary
    ended = {j.trace.job_id: j.ended_at for j in _state(result).done}
    assert ended == {1: 100.0, 2: 150.0, 3: 130.0}
    assert result.jct_s == [100.0, 110.0, 140.0]
    assert s.jct_s.mean == pytest.approx(350 / 3)
    assert s.jct_s.median == 110.0
    assert s.queueing_s.mean == pytest.approx((0 + 90 + 80) / 3)
    assert s.jct_lower_bound_s == pytest.approx(60.0)  # mean runtime
    assert s.makespan_s == 150.0
    assert s.makespan_lower_bound_s == pytest.approx(140.0)  # 560 GPU-s / 4 GPUs
    assert s.gpu_allocation == pytest.approx(560 / (4 * 150))
    assert s.idle_while_demand_gpu_s == 0.0
    assert s.slowdown.median == pytest.approx(140 / 50)  # slowdowns 1, 2.8, 3.67
    assert (s.jobs, s.unfinished, s.rejected, s.preemptions) == (3, 0, 0, 0)


def test_a_preemption_costs_the_work_since_the_checkpoint_plus_the_restart() -> None:
    # 2 GPUs. Job 1 (2 GPUs, 3,000 s) starts at 0; job 2 (2 GPUs, 500 s, higher
    # priority) arrives at 1,000 and the policy preempts job 1 then. Checkpoints every
    # 900 s: job 1 keeps 900 s, loses 100 s x 2 GPUs; job 2 runs 1,000-1,500; job 1
    # restarts at 1,500, pays 60 s, runs its last 2,100 s: ends at 3,660.
    jobs = [trace_job(1, 2, 3000, at=0), trace_job(2, 2, 500, at=1000, priority=5)]
    config = SimConfig(parse_shape("1x2"), cost=CostModel(60.0, 900.0))
    result = replay(jobs, config, PreemptAt(1000.0, job_id=1))  # type: ignore[arg-type]
    state = _state(result)
    first, second = state.jobs[1], state.jobs[2]
    assert (second.first_started_at, second.ended_at) == (1000.0, 1500.0)
    assert (first.ended_at, first.attempts, first.preemptions) == (3660.0, 2, 1)
    assert first.lost_gpu_s == pytest.approx(2 * (100 + 60))
    assert first.queued_s == pytest.approx(500.0)  # requeued at 1,000, restarted at 1,500
    assert first.attained_gpu_s == pytest.approx(2 * (1000 + 2160))
    s = result.summary
    assert (s.preemptions, s.preempted_jobs) == (1, 1)
    assert s.lost_gpu_s == pytest.approx(320.0)
    assert s.lost_fraction == pytest.approx(320 / (2 * 3000 + 2 * 500))
    assert result.stats.preemptions == 1


def test_free_preemption_loses_nothing_and_a_stop_delay_holds_the_gpus() -> None:
    jobs = [trace_job(1, 2, 3000, at=0), trace_job(2, 2, 500, at=1000, priority=5)]
    config = SimConfig(parse_shape("1x2"), cost=CostModel(0.0, 0.0, stop_delay_s=30.0))
    result = replay(jobs, config, PreemptAt(1000.0, job_id=1))  # type: ignore[arg-type]
    state = _state(result)
    # the stop lands at 1,030: job 1 keeps all 1,030 s of progress, job 2 starts then
    assert state.jobs[2].first_started_at == 1030.0
    assert state.jobs[1].lost_gpu_s == 0.0
    assert state.jobs[1].ended_at == 1530.0 + (3000 - 1030)


def test_a_requeued_job_keeps_its_submit_time() -> None:
    jobs = [trace_job(1, 2, 3000, at=7), trace_job(2, 2, 500, at=1000, priority=5)]
    seen: list[Snapshot] = []

    class Spy(PreemptAt):
        def decide(self, snapshot: Snapshot) -> Decisions:
            seen.append(snapshot)
            return super().decide(snapshot)

    config = SimConfig(parse_shape("1x2"))
    replay(jobs, config, Spy(1000.0, job_id=1))  # type: ignore[arg-type]
    requeued = [p for snap in seen for p in snap.pending if p.job_id == 1 and snap.now >= 1000]
    assert requeued and all(p.submitted_at == 7.0 for p in requeued)
    assert requeued[0].attained_gpu_s == pytest.approx(2 * (1000 - 7))


def test_simultaneous_events_make_one_cycle() -> None:
    # three arrivals at 0 and two ends at 10: one cycle at 0, one at 10
    jobs = [trace_job(1, 1, 10), trace_job(2, 1, 10), trace_job(3, 1, 20)]
    result = replay(jobs, SimConfig(parse_shape("1x2")), fifo(), may_preempt=False)
    assert result.stats.cycles == 2
    assert result.stats.event_times == 3  # 0, 10, 30
    assert result.stats.events == 6  # 3 arrivals, 3 ends
    assert [j.ended_at for j in _state(result).done] == [10.0, 10.0, 30.0]


def test_the_end_a_preempted_attempt_would_have_reached_is_no_event() -> None:
    # job 1 (2 GPUs, 3,000 s) is preempted at 1,000 for job 2, which ends at 1,500; job 1
    # restarts then and ends at 1,500 + 60 + 2,100 = 3,660. Job 3 arrives at 1,600 and
    # waits. Its first attempt would have ended at 3,000: no cycle there.
    jobs = [trace_job(1, 2, 3000), trace_job(2, 2, 500, at=1000, priority=5)]
    jobs.append(trace_job(3, 2, 10, at=1600))
    seen: list[float] = []

    class Spy(PreemptAt):
        def decide(self, snapshot: Snapshot) -> Decisions:
            seen.append(snapshot.now)
            return super().decide(snapshot)

    config = SimConfig(parse_shape("1x2"), cost=CostModel(60.0, 900.0))
    result = replay(jobs, config, Spy(1000.0, job_id=1))  # type: ignore[arg-type]
    assert seen == [0.0, 1000.0, 1000.0, 1500.0, 1600.0, 3660.0]
    assert result.stats.event_times == 7  # 0, 1,000 twice (the stop), 1,500, 1,600, 3,660, 3,670
    assert _state(result).jobs[3].ended_at == 3670.0


def test_no_cycle_while_no_gpu_is_free_unless_the_policy_may_preempt() -> None:
    jobs = [trace_job(1, 2, 100), trace_job(2, 1, 10, at=5), trace_job(3, 1, 10, at=6)]
    config = SimConfig(parse_shape("1x2"))
    quiet = replay(jobs, config, fifo(), may_preempt=False)
    eager = replay(jobs, config, fifo(), may_preempt=True)
    # at 0 and 100; skipped at 5 and 6 (no free GPU) and 110 (nothing pending)
    assert (quiet.stats.cycles, quiet.stats.skipped_cycles) == (2, 3)
    assert eager.stats.cycles == 4  # at 0, 5, 6, 100
    assert quiet.jct_s == eager.jct_s


def test_a_job_that_can_never_fit_is_refused() -> None:
    jobs = [trace_job(1, 16, 10), trace_job(2, 1, 10)]
    result = replay(jobs, SimConfig(parse_shape("1x8")), fifo(), may_preempt=False)
    assert (result.summary.jobs, result.summary.rejected) == (1, 1)
    assert any("never fit" in note for note in result.notes)


def test_a_multi_node_job_gets_whole_nodes() -> None:
    jobs = [trace_job(1, 16, 10)]
    result = replay(jobs, SimConfig(parse_shape("3x8")), fifo(), may_preempt=False)
    job = _state(result).jobs[1]
    assert (job.request.gpus, job.request.nodes) == (8, 2)
    assert result.summary.jobs == 1


def test_a_policy_that_double_books_a_gpu_is_caught() -> None:
    class Bad:
        name = "bad"

        def decide(self, snapshot: Snapshot) -> Decisions:
            gpu = (GpuRef(snapshot.nodes[0].name, 0),)
            return Decisions(
                placements=tuple(Placement(p.job_id, (gpu[0].node,), gpu) for p in snapshot.pending)
            )

    jobs = [trace_job(1, 1, 10), trace_job(2, 1, 10)]
    with pytest.raises(ValueError, match="not free"):
        replay(jobs, SimConfig(parse_shape("1x2")), Bad())  # type: ignore[arg-type]


def test_running_views_report_checkpoints() -> None:
    jobs = [trace_job(1, 1, 3000)]
    snaps: list[Snapshot] = []

    class Spy(PreemptAt):
        def decide(self, snapshot: Snapshot) -> Decisions:
            snaps.append(snapshot)
            return super().decide(snapshot)

    late = trace_job(2, 1, 10, at=2000)
    config = SimConfig(parse_shape("1x1"), cost=CostModel(0.0, 900.0))
    replay([*jobs, late], config, Spy(-1.0, job_id=0))  # type: ignore[arg-type]
    at_2000 = next(s for s in snaps if s.now == 2000.0)
    assert at_2000.running[0].last_checkpoint_at == 1800.0


def test_no_cycle_while_no_pending_request_fits_the_free_gpus() -> None:
    # 4 GPUs: job 1 (3 GPUs) runs 0-100; job 2 (4 GPUs) waits from 1; job 3 (2 GPUs)
    # arrives at 2: one GPU is free but fits neither, so no cycle runs until 100
    jobs = [trace_job(1, 3, 100), trace_job(2, 4, 10, at=1), trace_job(3, 2, 10, at=2)]
    result = replay(jobs, SimConfig(parse_shape("1x4")), fifo(), may_preempt=False)
    assert result.stats.cycles == 3  # at 0, 100 (job 2), 110 (job 3)
    assert result.stats.idle_cycles == 0
    assert [j.ended_at for j in _state(result).done] == [100.0, 110.0, 120.0]


def test_a_cycle_interval_defers_cycles_to_the_end_of_the_interval() -> None:
    # cycles at least 10 s apart: job 1 starts at 0; jobs 2 (at 1) and 3 (at 2) at 10
    jobs = [trace_job(1, 1, 5), trace_job(2, 1, 5, at=1), trace_job(3, 1, 5, at=2)]
    config = SimConfig(parse_shape("1x4"), cycle_interval_s=10.0)
    result = replay(jobs, config, fifo(), may_preempt=False)
    started = {j.trace.job_id: j.first_started_at for j in _state(result).done}
    assert started == {1: 0.0, 2: 10.0, 3: 10.0}
    assert result.stats.cycles == 2


def test_a_thrashing_policy_gets_bounded_cycles_at_one_instant() -> None:
    class Thrash:
        """Places what fits and preempts every running attempt: a ping-pong at one time."""

        name = "thrash"

        def decide(self, snapshot: Snapshot) -> Decisions:
            inner = fifo().decide(snapshot)
            victims = tuple(
                Preemption(r.attempt_id, r.job_id, "thrash")
                for r in snapshot.running
                if not r.stopping
            )
            return Decisions(inner.placements, inner.waits, victims)

    jobs = [trace_job(1, 1, 10), trace_job(2, 1, 10, at=1)]
    result = replay(jobs, SimConfig(parse_shape("1x2")), Thrash())  # type: ignore[arg-type]
    assert result.stats.thrashing_instants == 1
    assert result.stats.cycles >= MAX_CYCLES_PER_INSTANT
    assert result.summary.jobs == 2
    assert any("thrashed" in note for note in result.notes)


DEFAULT_POLICY = "fair_share+preemption=reclaim+admission=quota"


@pytest.mark.parametrize(("wake_ups", "started"), [(True, 300.0), (False, 10_000.0)])
def test_a_reservation_falling_due_wakes_the_simulator(wake_ups: bool, started: float) -> None:
    # 2 GPUs. Job 1 (queue a, 2 GPUs, 10,000 s) starts at 0; job 2 (queue b) arrives at
    # 10 and reserves the node from 300, when job 1 passes its 300 s minimum runtime.
    # No event falls at 300: woken then, the cycle preempts job 1 (queue a is above its
    # share) and job 2 starts at 300; without wake-ups, only when job 1 ends.
    jobs = [trace_job(1, 2, 10_000, queue="a"), trace_job(2, 2, 100, at=10, queue="b")]
    config = SimConfig(parse_shape("1x2"), wake_ups=wake_ups)
    result = simulate(jobs, config, PolicyChoice.parse(DEFAULT_POLICY))
    state = _state(result)
    assert state.jobs[2].first_started_at == started
    assert state.jobs[1].preemptions == (1 if wake_ups else 0)
    assert result.stats.wake_ups == (1 if wake_ups else 0)


def test_an_attempt_passing_its_minimum_runtime_wakes_the_simulator_for_a_guarantee() -> None:
    # Queue prod is guaranteed both GPUs; research's job 1 took them at 0. Prod's job 2
    # arrives at 100: owed, but job 1 may be preempted only from 300. The reservation
    # counts no early GPUs (``reserve_preemptible_gpus=false``: it announces no start),
    # so only the attempt passing its minimum runtime wakes the simulator at 300.
    jobs = [trace_job(1, 2, 10_000, queue="research"), trace_job(2, 2, 50, at=100, queue="prod")]
    queues = (QueueView("prod", guaranteed_gpus=2), QueueView("research"))
    config = SimConfig(parse_shape("1x2"), queues=queues)
    choice = PolicyChoice.parse(f"{DEFAULT_POLICY}+reserve_preemptible_gpus=false")
    result = simulate(jobs, config, choice)
    state = _state(result)
    assert state.jobs[2].first_started_at == 300.0
    assert state.jobs[1].preemptions == 1
    assert result.stats.wake_ups >= 1


def test_service_preemption_waits_for_the_victims_next_checkpoint() -> None:
    # One GPU. Job 1 (20,000 s) starts at 0, checkpoints every 900 s; job 2 (100 s)
    # arrives at 4,000, when job 1 has had 4,000 GPU-s (2D-LAS band 1, job 2 band 0).
    # Job 1 would lose the 400 s since its checkpoint at 3,600: more than the 120 s
    # allowed, so job 2 waits; the simulator wakes at the checkpoint of 4,500, job 1 is
    # stopped losing nothing, job 2 runs 4,500-4,600, job 1 pays its 60 s restart and
    # runs its last 15,500 s: it ends at 20,160.
    jobs = [trace_job(1, 1, 20_000), trace_job(2, 1, 100, at=4_000)]
    config = SimConfig(parse_shape("1x1"), cost=CostModel(60.0, 900.0))
    limited = simulate(
        jobs, config, PolicyChoice.parse("las+preemption=reclaim_las+service_loss_s=120")
    )
    first, second = _state(limited).jobs[1], _state(limited).jobs[2]
    assert (second.first_started_at, second.ended_at) == (4_500.0, 4_600.0)
    assert (first.ended_at, first.preemptions) == (20_160.0, 1)
    assert first.lost_gpu_s == pytest.approx(60.0)  # the restart alone
    # without the limit job 2 stops job 1 at once, which loses 400 s and the restart
    anyway = simulate(jobs, config, PolicyChoice.parse("las+preemption=reclaim_las"))
    first, second = _state(anyway).jobs[1], _state(anyway).jobs[2]
    assert (second.first_started_at, first.ended_at) == (4_000.0, 20_560.0)
    assert first.lost_gpu_s == pytest.approx(460.0)
