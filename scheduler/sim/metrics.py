"""What a replay measures: integrals over virtual time, samples for plots, per-job figures.

``Recorder.advance(now)`` is called before the events at ``now`` change anything, so
the state it reads held over the whole interval since the previous call; it integrates
that interval exactly (the state is piecewise constant) in O(queues + GPU types), and
takes the samples that fall in it. Definitions (units: s, GPU-s):

- allocated GPU-s: GPUs held by live attempts (stopping ones included) x time.
- idle while demand: free GPUs that some pending job could use now (a free GPU on a
  node where the smallest matching single-node request fits, or on an idle node when
  a multi-node request has enough idle nodes), capped at the pending GPUs, x time.
  Example: nodes with 3 and 1 free GPUs, pending jobs of 2 and 8 GPUs: 3 GPUs idle
  while demand (the 2-GPU job fits on the first node; the other GPU fits no one).
- guarantee violation: a queue with a guarantee is in violation while a pending job
  of it would fit within its guarantee (held + its GPUs <= guarantee), i.e. it waits
  for GPUs it is owed; queue-time is the time each guaranteed queue has demand.
  The shortfall is min(guarantee, held + pending) - held, in GPU-s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter

from scheduler.domain.decisions import Decisions, WaitReason
from scheduler.policy.fairshare import fair_shares
from scheduler.sim.state import SimState


@dataclass
class Series:
    """Samples every ``interval_s``: the value during the interval that holds each time."""

    interval_s: float
    t: list[float] = field(default_factory=list)
    pending_jobs: list[int] = field(default_factory=list)
    pending_gpus: list[int] = field(default_factory=list)
    allocated_gpus: list[int] = field(default_factory=list)
    held: dict[str, list[int]] = field(default_factory=dict)  # queue -> GPUs held
    pending: dict[str, list[int]] = field(default_factory=dict)  # queue -> GPUs asked
    fair: dict[str, list[float]] = field(default_factory=dict)  # queue -> fair share


@dataclass
class QueueTotals:
    held_gpu_s: float = 0.0
    demand_s: float = 0.0  # time with held + pending > 0
    violation_s: float = 0.0
    shortfall_gpu_s: float = 0.0


@dataclass
class Totals:
    """Integrals over [first event, last event]."""

    start: float
    end: float
    allocated_gpu_s: float = 0.0
    idle_demand_gpu_s: float = 0.0
    waiting_capacity_gpu_s: float = 0.0  # capacity x time while some job was pending
    queues: dict[str, QueueTotals] = field(default_factory=dict)
    waits_by_reason: Counter[WaitReason] = field(default_factory=Counter)  # over cycles run


_REASON = attrgetter("reason")


class Recorder:
    def __init__(self, state: SimState, start: float, sample_interval_s: float) -> None:
        self.state = state
        self.totals = Totals(start=start, end=start)
        self.totals.queues = {name: QueueTotals() for name in state.ledger.views}
        self.series = Series(interval_s=sample_interval_s)
        for name in state.ledger.views:
            self.series.held[name] = []
            self.series.pending[name] = []
            self.series.fair[name] = []
        self._next_sample = start
        self._guaranteed = [
            (v.name, v.guaranteed_gpus) for v in state.ledger.views.values() if v.guaranteed_gpus
        ]

    def advance(self, now: float) -> None:
        """Integrate the current state over [previous call, ``now``)."""
        totals, dt = self.totals, now - self.totals.end
        if dt > 0:
            self._integrate(dt)
            while self._next_sample < now:
                self._sample(self._next_sample)
                self._next_sample += self.series.interval_s
        totals.end = max(totals.end, now)

    def count_waits(self, decisions: Decisions) -> None:
        self.totals.waits_by_reason.update(map(_REASON, decisions.waits))

    def _integrate(self, dt: float) -> None:
        state, totals = self.state, self.totals
        cluster, ledger = state.cluster, state.ledger
        totals.allocated_gpu_s += (cluster.capacity - cluster.free_gpus) * dt
        if state.pending:
            totals.waiting_capacity_gpu_s += cluster.capacity * dt
            if cluster.free_gpus:
                totals.idle_demand_gpu_s += idle_usable(state) * dt
        for name, held in ledger.held.items():
            if held:
                totals.queues.setdefault(name, QueueTotals()).held_gpu_s += held * dt
        for name, guarantee in self._guaranteed:
            held, pending = ledger.held[name], ledger.pending_gpus[name]
            if not held and not pending:
                continue
            queue = totals.queues[name]
            queue.demand_s += dt
            sizes = ledger.pending_sizes.get(name)
            if sizes and held + min(sizes) <= guarantee:
                queue.violation_s += dt
            queue.shortfall_gpu_s += max(0, min(guarantee, held + pending) - held) * dt

    def _sample(self, at: float) -> None:
        state, series = self.state, self.series
        ledger, cluster = state.ledger, state.cluster
        series.t.append(at)
        series.pending_jobs.append(len(state.pending))
        series.pending_gpus.append(sum(ledger.pending_gpus.values()))
        series.allocated_gpus.append(cluster.capacity - cluster.free_gpus)
        demand = {n: float(ledger.held[n] + ledger.pending_gpus[n]) for n in ledger.views}
        shares = fair_shares(list(ledger.views.values()), demand, cluster.capacity)
        for name in ledger.views:
            series.held[name].append(ledger.held[name])
            series.pending[name].append(ledger.pending_gpus[name])
            series.fair[name].append(shares.get(name, 0.0))


def idle_usable(state: SimState) -> int:
    """Free GPUs some pending job could use now, capped at the pending GPUs (docstring)."""
    cluster, shapes = state.cluster, state.ledger.shapes
    usable = 0
    for gpu_type, hist in cluster.free_hist.items():
        kind = gpu_type.casefold()
        smallest: int | None = None
        multi_fits = False
        for request in shapes:
            if request.gpu_type is not None and request.gpu_type.casefold() != kind:
                continue
            if request.nodes == 1:
                smallest = request.gpus if smallest is None else min(smallest, request.gpus)
            elif request.nodes <= cluster.idle_nodes[gpu_type]:
                multi_fits = True
        if smallest is not None:
            usable += sum(f * hist[f] for f in range(max(smallest, 1), len(hist)))
        elif multi_fits:
            usable += cluster.idle_gpus[gpu_type]
    return min(usable, sum(state.ledger.pending_gpus.values()))


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks: [1, 2, 3, 4] at 0.5 -> 2.5."""
    if not sorted_values:
        return 0.0
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass(frozen=True)
class Distribution:
    mean: float
    median: float
    p99: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        ordered = sorted(values)
        if not ordered:
            return cls(0.0, 0.0, 0.0)
        return cls(sum(ordered) / len(ordered), percentile(ordered, 0.5), percentile(ordered, 0.99))


def ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def shares_by_queue(
    totals: Totals, capacity: int, series: Series
) -> Mapping[str, dict[str, float]]:
    """Per queue: its share of the cluster's GPU-time, and, over the samples in which it
    had demand (held + pending > 0), the GPUs it held, its fair share, and how far it was
    below that (GPUs, 0 when at or above), plus its guarantee figures."""
    span = max(totals.end - totals.start, 1e-9)
    result: dict[str, dict[str, float]] = {}
    for name, queue in sorted(totals.queues.items()):
        held, pending = series.held.get(name, []), series.pending.get(name, [])
        busy = [i for i, (h, p) in enumerate(zip(held, pending, strict=True)) if h or p]
        fair = series.fair.get(name, [])
        below = sum(max(0.0, fair[i] - held[i]) for i in busy)
        result[name] = {
            "share": ratio(queue.held_gpu_s, capacity * span),
            "busy_samples": float(len(busy)),
            "held_gpus_when_busy": ratio(sum(held[i] for i in busy), len(busy)),
            "fair_share_gpus_when_busy": ratio(sum(fair[i] for i in busy), len(busy)),
            "below_fair_share_gpus_when_busy": ratio(below, len(busy)),
            "guarantee_demand_s": queue.demand_s,
            "guarantee_violation_s": queue.violation_s,
            "guarantee_shortfall_gpu_s": queue.shortfall_gpu_s,
        }
    return result
