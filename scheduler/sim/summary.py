"""The figures of one replay, from the finished jobs and the recorder's integrals.

Definitions (times in s, work in GPU-s; a job's runtime is its trace duration):

- JCT: end - submit. Queueing delay: time pending, over all its waits (a preempted job
  waits again). Slowdown: JCT / max(runtime, 10 s) (bounded, so that jobs of a few
  seconds do not dominate).
- makespan: last end - first submit. Lower bounds: mean runtime for the average JCT;
  for the makespan the larger of (total GPU-s / GPUs) and the latest (submit + runtime)
  - first submit (a single long job bounds it too).
- GPU allocation: allocated GPU-s / (GPUs x makespan). Idle while demand (see
  ``metrics``): as a fraction of GPUs x makespan, and, stricter, of GPUs x the time
  some job was pending. Guarantee violations: violation queue-s / queue-s with demand
  over the queues that have a guarantee.
- preemption cost: GPU-s lost (restart overheads and unsaved progress), also as a
  fraction of the trace's work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scheduler.sim.metrics import Distribution, Recorder, ratio, shares_by_queue
from scheduler.sim.state import SimState

SLOWDOWN_FLOOR_S = 10.0


@dataclass(frozen=True)
class Summary:
    jobs: int  # finished
    unfinished: int  # still pending or running when events ran out
    rejected: int  # could never fit the cluster
    gpus: int
    jct_s: Distribution
    queueing_s: Distribution
    slowdown: Distribution
    jct_lower_bound_s: float
    makespan_s: float
    makespan_lower_bound_s: float
    work_gpu_s: float  # sum of runtime x GPUs of the finished jobs
    gpu_allocation: float  # fraction
    idle_while_demand_gpu_s: float
    idle_while_demand: float  # fraction of GPUs x makespan
    idle_while_waiting: float  # fraction of GPUs x time with a pending job
    guarantee_violation_s: float
    guarantee_violation: float  # fraction of guaranteed queue-time with demand
    guarantee_shortfall_gpu_s: float
    preemptions: int
    preempted_jobs: int
    lost_gpu_s: float
    lost_fraction: float  # of work_gpu_s
    queues: Mapping[str, dict[str, float]] = field(default_factory=dict)
    waits_by_reason: Mapping[str, int] = field(default_factory=dict)

    @property
    def jct_ratio(self) -> float:
        return ratio(self.jct_s.mean, self.jct_lower_bound_s)

    @property
    def makespan_ratio(self) -> float:
        return ratio(self.makespan_s, self.makespan_lower_bound_s)


def summarize(state: SimState, recorder: Recorder, *, rejected: int) -> tuple[Summary, list[float]]:
    """The summary and the sorted JCTs (for CDFs)."""
    done = state.done
    capacity = state.cluster.capacity
    jct = sorted(j.ended_at - j.trace.submitted_at for j in done if j.ended_at is not None)
    runtimes = [j.trace.duration_s for j in done]
    first = min((j.trace.submitted_at for j in state.jobs.values()), default=0.0)
    last_end = max((j.ended_at or 0.0 for j in done), default=first)
    makespan = max(0.0, last_end - first)
    work = sum(j.trace.duration_s * j.request.total_gpus for j in done)
    latest = max((j.trace.submitted_at + j.trace.duration_s for j in done), default=first)
    totals = recorder.totals
    guaranteed = [q for name, q in totals.queues.items() if _guaranteed(state, name)]
    violation = sum(q.violation_s for q in guaranteed)
    summary = Summary(
        jobs=len(done),
        unfinished=len(state.jobs) - len(done),
        rejected=rejected,
        gpus=capacity,
        jct_s=Distribution.of(jct),
        queueing_s=Distribution.of(j.queued_s for j in done),
        slowdown=Distribution.of(
            (j.ended_at - j.trace.submitted_at) / max(j.trace.duration_s, SLOWDOWN_FLOOR_S)
            for j in done
            if j.ended_at is not None
        ),
        jct_lower_bound_s=sum(runtimes) / len(runtimes) if runtimes else 0.0,
        makespan_s=makespan,
        makespan_lower_bound_s=max(ratio(work, capacity), latest - first),
        work_gpu_s=work,
        gpu_allocation=ratio(totals.allocated_gpu_s, capacity * makespan),
        idle_while_demand_gpu_s=totals.idle_demand_gpu_s,
        idle_while_demand=ratio(totals.idle_demand_gpu_s, capacity * makespan),
        idle_while_waiting=ratio(totals.idle_demand_gpu_s, totals.waiting_capacity_gpu_s),
        guarantee_violation_s=violation,
        guarantee_violation=ratio(violation, sum(q.demand_s for q in guaranteed)),
        guarantee_shortfall_gpu_s=sum(q.shortfall_gpu_s for q in guaranteed),
        preemptions=sum(j.preemptions for j in state.jobs.values()),
        preempted_jobs=sum(1 for j in state.jobs.values() if j.preemptions),
        lost_gpu_s=sum(j.lost_gpu_s for j in state.jobs.values()),
        lost_fraction=ratio(sum(j.lost_gpu_s for j in state.jobs.values()), work),
        queues=shares_by_queue(totals, capacity, recorder.series),
        waits_by_reason={r.value: n for r, n in sorted(totals.waits_by_reason.items())},
    )
    return summary, jct


def _guaranteed(state: SimState, queue: str) -> bool:
    view = state.ledger.views.get(queue)
    return view is not None and view.guaranteed_gpus > 0
