"""One replay end to end: trace jobs + cluster + queues + policy names -> ``SimResult``.

``simulate`` builds the policy with ``make_policy`` from the registries' names (the
same call the server's settings make), shapes each trace job into a gang request for
the simulated cluster, runs the ``Engine`` and summarizes (``summary.py``). A job no
node could ever hold is refused at arrival, as the server refuses it at submit.
``SimConfig.time_limits`` gives the jobs user time limits (``traces.TimeLimits``); jobs
stopped at their limit are counted among the unfinished ones, with a note.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scheduler.domain.snapshot import QueueView, ResourceRequest
from scheduler.policy import Policy, can_ever_fit, make_policy
from scheduler.policy.context import PolicyParams
from scheduler.sim.cluster import ClusterSpec, SimCluster, shape_request
from scheduler.sim.engine import MAX_CYCLES_PER_INSTANT, Engine, EngineStats
from scheduler.sim.metrics import Recorder, Series
from scheduler.sim.queues import with_trace_queues
from scheduler.sim.rows import TraceJob
from scheduler.sim.state import CostModel, SimState
from scheduler.sim.summary import Summary, summarize
from scheduler.sim.traces import TimeLimits

PIECES = ("ordering", "placement", "preemption", "backfill", "admission")
SAMPLES = 1000  # points of the time series, about
MIN_SAMPLE_INTERVAL_S = 60.0


@dataclass(frozen=True)
class PolicyChoice:
    """Registry names of a policy's pieces (None: ``make_policy``'s default) and params.

    ``params`` overrides ``PolicyParams`` fields by name, values as text:
    ``(("min_runtime_s", "600"),)``.
    """

    ordering: str | None = None
    placement: str | None = None
    preemption: str | None = None
    backfill: str | None = None
    admission: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str, base: PolicyChoice | None = None) -> PolicyChoice:
        """``"las+preemption=reclaim+min_runtime_s=600"``: an ordering, then pieces or params.

        Pieces and params not named come from ``base`` (e.g. the CLI's overrides).
        """
        ordering, *parts = text.strip().split("+")
        fields: dict[str, Any] = {p: getattr(base, p) if base else None for p in PIECES}
        fields["ordering"] = ordering.strip() or fields["ordering"]
        params = dict(base.params) if base else {}
        for part in parts:
            key, sep, value = (x.strip() for x in part.partition("="))
            if not sep or not key or not value:
                raise ValueError(f"policy {text!r}: {part!r} is not PIECE=NAME or PARAM=VALUE")
            if key in PIECES:
                fields[key] = value
            else:
                params[key] = value
        return cls(**fields, params=tuple(params.items()))

    @property
    def label(self) -> str:
        """``fair_share``, or ``fifo+preemption=reclaim``: the ordering and the overrides."""
        extras = [f"{p}={getattr(self, p)}" for p in PIECES[1:] if getattr(self, p)]
        extras += [f"{k}={v}" for k, v in self.params]
        ordering = self.ordering or inspect.signature(make_policy).parameters["ordering"].default
        return "+".join([str(ordering), *extras])


@dataclass(frozen=True)
class SimConfig:
    cluster: ClusterSpec
    queues: tuple[QueueView, ...] = ()  # trace queues not named here get weight 1
    cost: CostModel = field(default_factory=CostModel)
    sample_interval_s: float | None = None  # None: about SAMPLES points over the trace
    cycle_interval_s: float = 0.0  # 0: a cycle at every event time (the server's way)
    time_limits: TimeLimits = field(default_factory=TimeLimits)  # default: none
    wake_ups: bool = True  # cycles when the clock alone may change a decision (``engine``)


@dataclass
class SimResult:
    label: str
    policy_name: str
    summary: Summary
    series: Series
    jct_s: list[float]  # sorted, one per finished job (for CDFs)
    stats: EngineStats
    notes: list[str] = field(default_factory=list)
    state: SimState | None = field(default=None, repr=False)  # the end state (not pickled)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "state": None}  # results cross processes without it


def build_policy(choice: PolicyChoice) -> tuple[Policy, PolicyParams, bool]:
    """The policy, its params, and whether it may preempt; ValueError for an unknown name."""
    signature = inspect.signature(make_policy)
    kwargs: dict[str, Any] = {p: getattr(choice, p) for p in PIECES if getattr(choice, p)}
    missing = [p for p in kwargs if p not in signature.parameters]
    if missing:
        raise ValueError(f"this corral's make_policy has no {', '.join(missing)} piece yet")
    params = parse_params(choice.params)
    if "params" in signature.parameters:
        kwargs["params"] = params
    elif choice.params:
        raise ValueError("this corral's make_policy takes no params yet")
    preemption = kwargs.get("preemption") or signature.parameters["preemption"].default
    return make_policy(**kwargs), params, preemption != "none"


def parse_params(pairs: Sequence[tuple[str, str]]) -> PolicyParams:
    """``PolicyParams`` with ``(name, text)`` overrides, each read as its field's type."""
    defaults = PolicyParams()
    known = {f.name for f in dataclasses.fields(PolicyParams)}
    values: dict[str, Any] = {}
    for name, text in pairs:
        if name not in known:
            raise ValueError(f"unknown policy param {name!r}; known: {', '.join(sorted(known))}")
        values[name] = _as_type_of(getattr(defaults, name), text, name)
    return dataclasses.replace(defaults, **values)


def _as_type_of(default: Any, text: str, name: str) -> Any:
    try:
        if isinstance(default, bool):
            if text.lower() not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError(text)
            return text.lower() in {"true", "1", "yes"}
        if isinstance(default, tuple):
            return tuple(float(part) for part in text.split(",") if part.strip())
        return type(default)(text)
    except ValueError:
        raise ValueError(
            f"policy param {name}: {text!r} is not a {type(default).__name__}"
        ) from None


def simulate(jobs: Sequence[TraceJob], config: SimConfig, choice: PolicyChoice) -> SimResult:
    """Replay ``jobs`` (sorted by submit time) on ``config`` with the chosen policy."""
    policy, params, may_preempt = build_policy(choice)
    return replay(jobs, config, policy, params=params, may_preempt=may_preempt, label=choice.label)


def replay(
    jobs: Sequence[TraceJob],
    config: SimConfig,
    policy: Policy,
    *,
    params: PolicyParams | None = None,
    may_preempt: bool = True,
    label: str | None = None,
) -> SimResult:
    """Replay ``jobs`` with a ready ``Policy`` (``simulate`` makes one by name)."""
    params = params or PolicyParams()
    cluster = SimCluster(config.cluster)
    arrivals, notes = shape_jobs(jobs, cluster)
    queues = with_trace_queues(config.queues, (j.queue for j in jobs))
    state = SimState(
        cluster,
        queues,
        config.cost,
        half_life_s=params.usage_half_life_s,
        report_checkpoints=may_preempt,
        time_limit=config.time_limits.limit_s,
    )
    start = jobs[0].submitted_at if jobs else 0.0
    recorder = Recorder(state, start, config.sample_interval_s or _interval(jobs))
    engine = Engine(
        state,
        arrivals,
        policy,
        recorder,
        may_preempt=may_preempt,
        cycle_interval_s=config.cycle_interval_s,
        wake_ups=config.wake_ups,
        min_runtime_s=params.min_runtime_s,
        checkpoint_wake_ups=math.isfinite(params.service_loss_s),
    )
    stats = engine.run()
    summary, jct = summarize(state, recorder, rejected=len(jobs) - len(arrivals))
    if stats.thrashing_instants:
        notes.append(
            f"the policy thrashed (preempted and placed again, {MAX_CYCLES_PER_INSTANT} cycles "
            f"at one time) at {stats.thrashing_instants} instants"
        )
    if state.timed_out:
        notes.append(
            f"{len(state.timed_out)} jobs reached their time limit ({config.time_limits.label}) "
            "and were stopped (timeout); they count as unfinished"
        )
    name = label or policy.name
    return SimResult(name, policy.name, summary, recorder.series, jct, stats, notes, state)


def simulate_many(
    jobs: Sequence[TraceJob], config: SimConfig, choices: Sequence[PolicyChoice], workers: int
) -> list[SimResult]:
    """``simulate`` for each choice, ``workers`` processes at a time, results in order."""
    if workers <= 1 or len(choices) <= 1:
        return [simulate(jobs, config, choice) for choice in choices]
    with ProcessPoolExecutor(max_workers=min(workers, len(choices))) as pool:
        futures = [pool.submit(simulate, jobs, config, choice) for choice in choices]
        return [future.result() for future in futures]


def shape_jobs(
    jobs: Sequence[TraceJob], cluster: SimCluster
) -> tuple[list[tuple[TraceJob, ResourceRequest]], list[str]]:
    """Each job with its gang request; jobs no node could ever hold are left out (noted)."""
    types = {g.gpu_type.casefold() for g in cluster.spec.groups}
    nodes = cluster.views()
    fits: dict[ResourceRequest, bool] = {}
    shaped: list[tuple[TraceJob, ResourceRequest]] = []
    untyped: Counter[str] = Counter()
    refused = 0
    for job in jobs:
        gpu_type = job.gpu_type
        if gpu_type is not None and gpu_type.casefold() not in types:
            untyped[gpu_type] += 1
            gpu_type = None
        request = shape_request(job.gpus, job.nodes, gpu_type, cluster.spec)
        if request not in fits:
            fits[request] = can_ever_fit(request, nodes)
        if fits[request]:
            shaped.append((job, request))
        else:
            refused += 1
    notes = []
    if untyped:
        asked = ", ".join(f"{n} {t}" for t, n in untyped.most_common(3))
        notes.append(f"jobs asked GPU types the cluster lacks ({asked}); they take any type")
    if refused:
        notes.append(f"{refused} jobs can never fit the cluster and were refused at submit")
    return shaped, notes


def _interval(jobs: Sequence[TraceJob]) -> float:
    if not jobs:
        return MIN_SAMPLE_INTERVAL_S
    span = jobs[-1].submitted_at - jobs[0].submitted_at + max(j.duration_s for j in jobs)
    return max(MIN_SAMPLE_INTERVAL_S, span / SAMPLES)
