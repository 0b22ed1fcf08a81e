"""``corral simulate``: replay a job trace through the scheduler's own policy, offline.

It parses the options, loads the trace, cluster and queues (``scheduler.sim``), runs
one replay per policy and prints the figures side by side (or JSON), optionally with
plots. No server is involved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from scheduler.cli.config import CliError, CliInputError
from scheduler.domain.snapshot import QueueView
from scheduler.sim.cluster import ClusterSpec, load_cluster_spec, parse_shape
from scheduler.sim.queues import queues_from_config, queues_from_vc
from scheduler.sim.report import format_queues, format_table, to_json
from scheduler.sim.rows import TraceError, TraceJob, parse_time
from scheduler.sim.run import PolicyChoice, SimConfig, SimResult, simulate_many
from scheduler.sim.run import simulate as replay
from scheduler.sim.state import CostModel
from scheduler.sim.traces import FORMATS, TimeLimits, load_trace, select_jobs

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
EPILOG = """Examples:

\b
  corral simulate philly.csv --cluster 64x8 --queues-from-vc philly_vc.csv
  corral simulate week.csv --compare fair_share,las,fifo,multifactor --plots out/
  corral simulate philly.csv --start 2017-10-01 --end 2017-11-01 \\
      --policy las+preemption=reclaim --checkpoint-interval-s 900 --json
  corral simulate history.jsonl --cluster-spec nodes.csv --queue-config queues.yaml
  corral simulate week.csv --time-limits x2 --policy fair_share_sjf
"""


def _piece(name: str, what: str) -> Any:
    return click.option(f"--{name}", metavar="NAME", help=f"{what} [default: the registry's]")


@click.command(epilog=EPILOG)
@click.argument("trace", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="the trace's format (auto: from its first line)",
)
@click.option("--origin", metavar="TIME", help="what an Alibaba submit_time of 0 is [0]")
@click.option("--skip-bad-rows", is_flag=True, help="leave malformed rows out, do not fail")
@click.option("--cluster", "shape", metavar="NxG[:TYPE],...", help="cluster shape [64x8]")
@click.option("--cluster-spec", type=FILE, help="CSV name_prefix,count,gpus,gpu_type[,memory_mib]")
@click.option("--queues-from-vc", type=FILE, help="CSV vc,node num: guarantees by nodes")
@click.option("--queue-config", type=FILE, help="YAML/JSON {queues: [{name, weight, ...}]}")
@click.option(
    "--policy",
    metavar="ORDERING[+PIECE=NAME...]",
    help="ordering, e.g. fair_share or las+preemption=reclaim [default: the registry's]",
)
@click.option("--compare", metavar="P1,P2,...", help="run these policies side by side")
@_piece("placement", "placement")
@_piece("admission", "admission (quota rules)")
@_piece("backfill", "decision pass")
@_piece("preemption", "preemption")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="a PolicyParams field")
@click.option(
    "--restart-overhead-s",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="paid by every attempt after a job's first",
)
@click.option(
    "--checkpoint-interval-s",
    type=click.FloatRange(min=0),
    default=900.0,
    show_default=True,
    help="a preempted job keeps its progress up to its last checkpoint (0: all of it)",
)
@click.option(
    "--stop-delay-s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="from a preemption to its GPUs being free",
)
@click.option(
    "--cycle-interval-s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="cycles at least this far apart (0: at every event time, as the server)",
)
@click.option(
    "--time-limits",
    metavar="none|exact|xF|xA-B",
    default="none",
    show_default=True,
    help="give each job a time limit: its duration x F (or a factor drawn in [A, B]), "
    "rounded up to whole minutes",
)
@click.option(
    "--time-limit-seed",
    type=int,
    default=0,
    show_default=True,
    help="seeds the factors drawn by xA-B",
)
@click.option(
    "--wake-ups/--no-wake-ups",
    default=True,
    show_default=True,
    help="also cycle when the clock alone may change a decision (a reservation falling "
    "due), as the server's periodic pass does",
)
@click.option("--start", metavar="TIME", help="first submit time (ISO date or seconds)")
@click.option("--end", metavar="TIME", help="submit times before this")
@click.option("--limit", type=click.IntRange(min=1), help="at most this many jobs")
@click.option("--queues", "only_queues", metavar="A,B,...", help="only these queues' jobs")
@click.option("--per-queue", is_flag=True, help="also print each queue's share")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="policies replayed in parallel processes",
)
@click.option(
    "--plots",
    type=click.Path(file_okay=False, path_type=Path),
    help="write PNG plots and index.html into this directory (needs matplotlib)",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def simulate(**options: Any) -> None:
    """Replay a job trace through a policy on a simulated cluster.

    TRACE is a Philly CSV, an Alibaba PAI simulator CSV or corral's JSONL job history.
    """
    try:
        _run(options)
    except (TraceError, ValueError, OSError, yaml.YAMLError) as exc:
        raise CliError(str(exc)) from None


def _run(o: dict[str, Any]) -> None:
    limits = TimeLimits.parse(o["time_limits"], o["time_limit_seed"])  # before the slow load
    jobs, notes = _jobs(o)
    if not jobs:
        raise CliError("no job of the trace is in the chosen window and queues")
    cluster = _cluster(o)
    config = SimConfig(
        cluster,
        _queues(o, cluster),
        _cost(o),
        cycle_interval_s=o["cycle_interval_s"],
        time_limits=limits,
        wake_ups=o["wake_ups"],
    )
    choices = _choices(o)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    results = _simulate_all(jobs, config, choices, o["workers"])
    if o["as_json"]:
        click.echo(json.dumps(to_json(results, _setup(o, jobs, config)), indent=2))
    else:
        click.echo(format_table(results))
        if o["per_queue"]:
            for result in results:
                click.echo(f"\nqueues under {result.label}:\n{format_queues(result)}")
    for note in sorted({n for r in results for n in r.notes}):
        click.echo(f"note: {note}", err=True)
    if o["plots"]:
        _plots(results, o["plots"])


def _jobs(o: dict[str, Any]) -> tuple[tuple[TraceJob, ...], list[str]]:
    origin = parse_time(o["origin"]) if o["origin"] else 0.0
    loaded = load_trace(o["trace"], o["fmt"], origin_s=origin, strict=not o["skip_bad_rows"])
    notes = [f"row {p.row} left out: {p.reason}" for p in loaded.skipped[:5]]
    if len(loaded.skipped) > 5:
        notes.append(f"... {len(loaded.skipped) - 5} more rows left out")
    queues = _names(o["only_queues"])
    jobs = select_jobs(
        loaded.jobs,
        start=parse_time(o["start"]) if o["start"] else None,
        end=parse_time(o["end"]) if o["end"] else None,
        limit=o["limit"],
        queues=queues or None,
    )
    return jobs, notes


def _cluster(o: dict[str, Any]) -> ClusterSpec:
    if o["shape"] and o["cluster_spec"]:
        raise CliInputError("give --cluster or --cluster-spec, not both")
    if o["cluster_spec"]:
        return load_cluster_spec(o["cluster_spec"])
    return parse_shape(o["shape"] or "64x8")


def _queues(o: dict[str, Any], cluster: ClusterSpec) -> tuple[QueueView, ...]:
    if o["queues_from_vc"] and o["queue_config"]:
        raise CliInputError("give --queues-from-vc or --queue-config, not both")
    if o["queues_from_vc"]:
        return queues_from_vc(o["queues_from_vc"], cluster.total_gpus)
    if o["queue_config"]:
        text = Path(o["queue_config"]).read_text(encoding="utf-8")
        return queues_from_config(yaml.safe_load(text))
    return ()


def _cost(o: dict[str, Any]) -> CostModel:
    return CostModel(
        restart_overhead_s=o["restart_overhead_s"],
        checkpoint_interval_s=o["checkpoint_interval_s"],
        stop_delay_s=o["stop_delay_s"],
    )


def _choices(o: dict[str, Any]) -> list[PolicyChoice]:
    if o["policy"] and o["compare"]:
        raise CliInputError("give --policy or --compare, not both")
    params = []
    for pair in o["params"]:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise CliInputError(f"--param {pair!r}: expected NAME=VALUE")
        params.append((name.strip(), value.strip()))
    pieces = {k: o[k] for k in ("placement", "admission", "backfill", "preemption")}
    base = PolicyChoice(params=tuple(params), **pieces)
    names = _names(o["compare"]) or ([o["policy"]] if o["policy"] else [])
    return [PolicyChoice.parse(name, base) for name in names] or [base]


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _simulate_all(
    jobs: tuple[TraceJob, ...], config: SimConfig, choices: list[PolicyChoice], workers: int
) -> list[SimResult]:
    if workers == 1 or len(choices) == 1:
        results = []
        for choice in choices:
            click.echo(f"simulating {choice.label} on {len(jobs):,} jobs ...", err=True)
            results.append(replay(jobs, config, choice))
        return results
    click.echo(f"simulating {len(choices)} policies on {len(jobs):,} jobs ...", err=True)
    return simulate_many(jobs, config, choices, workers)


def _setup(o: dict[str, Any], jobs: tuple[TraceJob, ...], config: SimConfig) -> dict[str, Any]:
    return {
        "trace": str(o["trace"]),
        "jobs": len(jobs),
        "first_submit": jobs[0].submitted_at,
        "last_submit": jobs[-1].submitted_at,
        "cluster": config.cluster.describe(),
        "gpus": config.cluster.total_gpus,
        "queues": [
            {"name": q.name, "weight": q.weight, "guaranteed_gpus": q.guaranteed_gpus}
            for q in config.queues
        ],
        "restart_overhead_s": config.cost.restart_overhead_s,
        "checkpoint_interval_s": config.cost.checkpoint_interval_s,
        "stop_delay_s": config.cost.stop_delay_s,
        "cycle_interval_s": config.cycle_interval_s,
        "time_limits": config.time_limits.label,
        "time_limit_seed": config.time_limits.seed,
        "wake_ups": config.wake_ups,
    }


def _plots(results: list[SimResult], directory: Path) -> None:
    from scheduler.sim.plots import PlotsUnavailable, write_plots

    try:
        written = write_plots(results, directory)
    except PlotsUnavailable as exc:
        raise CliError(str(exc)) from None
    click.echo(f"plots: {directory / 'index.html'} ({len(written) - 1} PNGs)", err=True)
