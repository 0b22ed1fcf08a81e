"""Policy quality on the Philly traces: the standard comparison, each policy against the bounds.

Scenarios (``--scenarios``, all by default):

- ``week``: the Philly week of 2017-10-09 in the Alibaba PAI simulator format (12,751
  jobs), 512 GPUs (64 nodes x 8), one queue per Philly VC with a guarantee
  proportional to its nodes (``philly_vc.csv``).
- ``month``: the jobs of ``philly.csv`` submitted in ``--month`` (default October 2017),
  same cluster and queues.
- ``full``: the whole ``philly.csv`` (82,247 jobs) under the first policy: the
  simulator's speed (wall time, time per scheduling event), on ``--full-cluster``
  (default 104 x 8 = 832 GPUs: the trace's busiest week, late October, offers 89 % of
  it, the load of the week on 512 GPUs). On 512 GPUs four of the six weeks from late
  September to October's end offer 112-144 % of the capacity, the backlog grows to
  a thousand jobs and more, and each cycle costs in proportion to it: the whole trace
  takes some 16 CPU-minutes there (``--full-cluster 64x8``), 2-3 on 832 GPUs.

Preemption costs ``--restart-overhead-s`` (60) plus the work since the last checkpoint
(``--checkpoint-interval-s``, 900); ``--free-preemption`` sets both to 0, as the
published reference results assume. ``--time-limits`` gives every job a user time
limit from its duration (``none``, ``exact``, ``x2``, ``x1-10``: see ``corral simulate
--help``); the traces carry none, so by default backfill cannot use time. Policies are
registry names, optionally with pieces: ``fair_share+preemption=reclaim``; names the
registry does not know yet are reported and skipped. Targets checked for the first
policy on the week: average JCT within 10 % of the lower bound, GPU idle while demand
under 1 % of GPU-time, guarantee violations under 2 % of queue-time.

    python benchmarks/policy.py --traces ../shared/traces
    python benchmarks/policy.py --traces ../shared/traces --scenarios week \\
        --policies fair_share+preemption=reclaim,las,fifo,multifactor --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clean checkout

from scheduler.sim.cluster import parse_shape
from scheduler.sim.queues import queues_from_vc
from scheduler.sim.report import format_table, to_json
from scheduler.sim.rows import TraceJob, parse_time
from scheduler.sim.run import PolicyChoice, SimConfig, SimResult, build_policy, simulate_many
from scheduler.sim.state import CostModel
from scheduler.sim.traces import TimeLimits, load_trace, select_jobs

WEEK = "converted/philly_week_20171009_alibaba_sim_format.csv"
PHILLY = "philly_pollux/philly.csv"
VCS = "philly_vc.csv"
WEEK_ORIGIN = "2017-10-09"
# the server's default policy first (the targets are checked for it), then the baselines
DEFAULT_POLICIES = "fair_share+preemption=reclaim+admission=quota,fair_share,las,fifo,multifactor"
TARGET_JCT_RATIO = 1.10
TARGET_IDLE = 0.01
TARGET_VIOLATION = 0.02


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: tuple[TraceJob, ...]
    config: SimConfig


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    traces = Path(args.traces)
    cost = CostModel(0.0, 0.0) if args.free_preemption else CostModel(args.restart, args.ckpt)
    choices, unknown = _choices(args.policies)
    for name, why in unknown:
        print(f"skipped {name}: {why}", file=sys.stderr)
    if not choices:
        print("no registered policy to run", file=sys.stderr)
        return 1
    report: dict[str, Any] = {}
    for scenario in _scenarios(args, traces, cost):
        runs = choices[:1] if scenario.name == "full" else choices
        print(f"\n== {scenario.name}: {len(scenario.jobs):,} jobs, {_setup(scenario)}")
        started = time.perf_counter()
        results = _run(scenario, runs, args.workers)
        print(format_table(results))
        print(f"(wall time {time.perf_counter() - started:.0f} s for {len(runs)} policies)")
        if scenario.name == "week":
            print(_targets(results[0]))
        report[scenario.name] = to_json(results, {"jobs": len(scenario.jobs)})
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def _run(scenario: Scenario, runs: list[PolicyChoice], workers: int) -> list[SimResult]:
    if workers > 1:
        return simulate_many(scenario.jobs, scenario.config, runs, workers)
    results = []
    for choice in runs:  # one at a time, with progress on stderr
        results.extend(simulate_many(scenario.jobs, scenario.config, [choice], 1))
        stats = results[-1].stats
        print(f"  {choice.label}: {stats.cpu_s:.0f} s CPU", file=sys.stderr, flush=True)
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", required=True, help="the shared traces directory")
    parser.add_argument("--policies", default=DEFAULT_POLICIES)
    parser.add_argument("--scenarios", default="week,month,full")
    parser.add_argument("--month", default="2017-10-01:2017-11-01", help="START:END")
    parser.add_argument("--cluster", default="64x8")
    parser.add_argument("--full-cluster", default="104x8", help="the cluster of the full trace")
    parser.add_argument("--restart", type=float, default=60.0, help="restart overhead (s)")
    parser.add_argument("--ckpt", type=float, default=900.0, help="checkpoint interval (s)")
    parser.add_argument("--free-preemption", action="store_true")
    parser.add_argument("--time-limits", default="none", help="none, exact, xF or xA-B")
    parser.add_argument("--workers", type=int, default=1, help="policies run in parallel")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument(
        "--no-wake-ups",
        action="store_true",
        help="cycle on events only, not when the clock alone may change a decision",
    )
    return parser


def _choices(text: str) -> tuple[list[PolicyChoice], list[tuple[str, str]]]:
    """The registered policies among ``text``, and the others with the reason."""
    known, unknown = [], []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        try:
            choice = PolicyChoice.parse(name)
            build_policy(choice)
        except ValueError as exc:
            unknown.append((name, str(exc)))
            continue
        known.append(choice)
    return known, unknown


def _scenarios(args: argparse.Namespace, traces: Path, cost: CostModel) -> list[Scenario]:
    cluster = parse_shape(args.cluster)
    queues = queues_from_vc(traces / VCS, cluster.total_gpus)
    limits = TimeLimits.parse(args.time_limits)
    config = SimConfig(cluster, queues, cost, time_limits=limits, wake_ups=not args.no_wake_ups)
    wanted = [s.strip() for s in args.scenarios.split(",")]
    philly = load_trace(traces / PHILLY).jobs if {"month", "full"} & set(wanted) else ()
    scenarios = []
    for name in wanted:
        if name == "week":
            week = load_trace(traces / WEEK, origin_s=parse_time(WEEK_ORIGIN)).jobs
            scenarios.append(Scenario("week", week, config))
        elif name == "month":
            start, _, end = args.month.partition(":")
            jobs = select_jobs(philly, start=parse_time(start), end=parse_time(end))
            scenarios.append(Scenario("month", jobs, config))
        elif name == "full":
            full = parse_shape(args.full_cluster)
            full_queues = queues_from_vc(traces / VCS, full.total_gpus)
            full_config = replace(config, cluster=full, queues=full_queues)
            scenarios.append(Scenario("full", philly, full_config))
        else:
            raise SystemExit(f"unknown scenario {name!r}: week, month or full")
    return scenarios


def _setup(scenario: Scenario) -> str:
    cost = scenario.config.cost
    return (
        f"{scenario.config.cluster.describe()} ({scenario.config.cluster.total_gpus} GPUs), "
        f"{len(scenario.config.queues)} VC queues, restart {cost.restart_overhead_s:g} s, "
        f"checkpoints every {cost.checkpoint_interval_s:g} s, "
        f"time limits {scenario.config.time_limits.label}"
    )


def _targets(result: SimResult) -> str:
    s = result.summary
    checks = [
        ("avg JCT / lower bound", s.jct_ratio, TARGET_JCT_RATIO, f"{s.jct_ratio:.3f}x"),
        (
            "idle while demand",
            s.idle_while_demand,
            TARGET_IDLE,
            f"{100 * s.idle_while_demand:.3f}%",
        ),
        (
            "guarantee violations",
            s.guarantee_violation,
            TARGET_VIOLATION,
            f"{100 * s.guarantee_violation:.3f}%",
        ),
    ]
    lines = [f"targets for {result.label}:"]
    for name, value, limit, shown in checks:
        verdict = "met" if value <= limit else "NOT met"
        lines.append(f"  {name}: {shown} (target <= {limit:g}): {verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
