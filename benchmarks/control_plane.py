"""How fast the control plane is on this machine: submit, drain, start latency, arrays.

Starts a real local cluster on loopback (``scheduler.localcluster``): one server on
SQLite in a temporary directory and 16 agent processes with 8 simulated GPUs each, and
runs the phases Slurm was measured with on the same machine (the table in the
project's control-plane notes), each the median of ``--runs`` runs:

| phase | what is timed |
|---|---|
| submit, CLI | one ``corral submit`` process per job, one after another (no agents) |
| submit, batch | the same jobs through ``POST /api/v1/jobs/batch`` (one request) |
| drain 1-GPU | a batch of ``true`` jobs, from the submit until none is left |
| drain mix | the same with 1/2/4/8-GPU jobs; and the GPU time left free while a job fit |
| start latency | submit → the job's first command (it writes a timestamp), idle cluster |
| array | ``submit --array 0-(N-1)`` of ``true``, from the submit until all ended |
| CLI wall | one ``corral submit -g 1 -- true`` process, start to exit (p50, min, max) |

With ``--history N`` the cluster's database first gets N finished jobs (written
straight into the tables, as ``benchmarks/load_db.py`` seeds them), so that the drains
run against a grown database; a page of ``corral jobs`` (its API call, 20 times) is
timed before the seeding (with a page of jobs run first) and after.

    python benchmarks/control_plane.py              # 1,000 jobs per phase, 3 runs
    python benchmarks/control_plane.py --quick      # a smoke run: small and once
    python benchmarks/control_plane.py --phases submit --cli-jobs 15 --jobs 10 --runs 1
    python benchmarks/control_plane.py --json out.json
    python benchmarks/control_plane.py --phases drain,mix --runs 1   # the drains only
    python benchmarks/control_plane.py --phases drain,mix --history 100000  # a grown database

Times are wall-clock on a machine the server, the agents and the benchmark share.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clean checkout

from benchmarks.packing import packing
from scheduler.client import CorralClient
from scheduler.domain.spec import JobSpec, Resources
from scheduler.localcluster import LocalCluster, corral_argv
from scheduler.store.db import Database, sqlite_url

AGENTS = 16
GPUS_PER_AGENT = 8
GPU_SPEC = f"sim:{GPUS_PER_AGENT}xA100-80GB"
LIVE = ["pending", "starting", "running", "stopping"]
MIX = (1, 2, 4, 8)
SERVER_ARGS = ("--log-level", "warning")
DRAIN_TIMEOUT_S = 1800.0
PHASES = ("submit", "drain", "mix", "latency", "array")  # in the order they run
# tuned Slurm 22.05 on this machine (16 slurmd x 8 fake GPUs), for the table
SLURM_TUNED = {
    "submit_cli_jobs_per_s": 140.0,
    "drain_1gpu_jobs_per_s": 52.0,
    "drain_mix_jobs_per_s": 28.0,
    "start_latency_p50_ms": 450.0,
    "array_jobs_per_s": 53.0,
}


@dataclass(frozen=True)
class Sizes:
    jobs: int  # per drain phase and per array
    cli_jobs: int  # corral submit processes in the CLI submit phase
    probes: int  # start-latency probes and CLI wall samples
    runs: int
    phases: frozenset[str] = frozenset(PHASES)
    history: int = 0  # finished jobs seeded into the database before the phases


def true_job(gpus: int = 1) -> JobSpec:
    return JobSpec(command=["true"], resources=Resources(gpus=gpus))


def wait_until_drained(client: CorralClient, array_id: int | None = None) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while client.list_jobs(LIVE, limit=1, array_id=array_id).jobs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs still live after {DRAIN_TIMEOUT_S:.0f}s")
        time.sleep(0.02)


def cli_env(cluster: LocalCluster) -> dict[str, str]:
    return {**os.environ, "CORRAL_SERVER": cluster.url, "CORRAL_TOKEN": cluster.token}


def run_cli_submit(env: dict[str, str]) -> float:
    """One ``corral submit -g 1 -- true`` process; its wall time in seconds."""
    started = time.perf_counter()
    subprocess.run(
        corral_argv("submit", "-g", "1", "--", "true"),
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def cli_wall_figures(walls: list[float]) -> dict[str, float]:
    """p50, min and max of ``corral submit`` process walls, in milliseconds."""
    return {
        "cli_submit_wall_p50_ms": statistics.median(walls) * 1000,
        "cli_submit_wall_min_ms": min(walls) * 1000,
        "cli_submit_wall_max_ms": max(walls) * 1000,
    }


# -- phases ---------------------------------------------------------------------------


def submit_phases(workdir: Path, sizes: Sizes) -> dict[str, float]:
    """Submit rates on a server with no agents (Slurm's partition down): nothing runs."""
    with LocalCluster(workdir / "submit", server_args=SERVER_ARGS) as cluster:
        cluster.start_server()
        env = cli_env(cluster)
        walls = [run_cli_submit(env) for _ in range(sizes.cli_jobs)]
        with cluster.client(timeout_s=300) as client:
            specs = [true_job() for _ in range(sizes.jobs)]
            started = time.perf_counter()
            client.submit_batch(specs)
            batch_s = time.perf_counter() - started
    return {
        "submit_cli_jobs_per_s": len(walls) / sum(walls),
        **cli_wall_figures(walls),
        "submit_batch_jobs_per_s": sizes.jobs / batch_s,
    }


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes and their reaped children used so far."""
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system + times.children_user + times.children_system
    return total


@dataclass(frozen=True)
class Drained:
    jobs_per_s: float
    ids: list[int]
    server_cpu_ms: float  # per job
    agents_cpu_ms: float  # per job, the attempts' processes included

    def figures(self, phase: str) -> dict[str, float]:
        return {
            f"{phase}_jobs_per_s": self.jobs_per_s,
            f"{phase}_server_cpu_ms_per_job": self.server_cpu_ms,
            f"{phase}_agents_cpu_ms_per_job": self.agents_cpu_ms,
        }


def drain(cluster: LocalCluster, client: CorralClient, specs: list[JobSpec]) -> Drained:
    assert cluster.server is not None
    server, agents = [cluster.server.popen.pid], [a.popen.pid for a in cluster.agents.values()]
    cpu_before = cpu_s(server), cpu_s(agents)
    started = time.perf_counter()
    ids = client.submit_batch(specs).job_ids
    wait_until_drained(client)
    wall_s = time.perf_counter() - started
    per_job_ms = 1000 / len(specs)
    return Drained(
        jobs_per_s=len(specs) / wall_s,
        ids=ids,
        server_cpu_ms=(cpu_s(server) - cpu_before[0]) * per_job_ms,
        agents_cpu_ms=(cpu_s(agents) - cpu_before[1]) * per_job_ms,
    )


def drain_mix(cluster: LocalCluster, client: CorralClient, sizes: Sizes) -> dict[str, float]:
    specs = [true_job(MIX[i % len(MIX)]) for i in range(sizes.jobs)]
    drained = drain(cluster, client, specs)
    jobs = [client.get_job(job_id) for job_id in drained.ids]
    nodes = {f"bench-{n:02d}": GPUS_PER_AGENT for n in range(AGENTS)}
    result = packing(jobs, nodes)
    return drained.figures("drain_mix") | {
        "drain_mix_idle_while_needed_pct": 100 * result.idle_fraction,
        "drain_mix_rounds_leaving_a_fit_pct": 100 * result.rounds_leaving_a_fit / result.rounds
        if result.rounds
        else 0.0,
    }


def start_latency(client: CorralClient, workdir: Path, probes: int) -> dict[str, float]:
    """Submit → first command: each probe writes ``time.time()`` as its first act."""
    latencies = []
    for n in range(probes):
        stamp = workdir / f"probe-{n}"
        spec = JobSpec(command=f"date +%s.%N > {stamp}", resources=Resources(gpus=1))
        submitted = time.time()
        job = client.submit(spec)
        client.wait(job.id, poll_s=0.02, timeout_s=60)
        latencies.append(float(stamp.read_text()) - submitted)
    return {"start_latency_p50_ms": statistics.median(latencies) * 1000}


def array_phase(client: CorralClient, jobs: int) -> dict[str, float]:
    started = time.perf_counter()
    array_id = client.submit_array(true_job(), f"0-{jobs - 1}").array_id
    wait_until_drained(client, array_id)
    return {"array_jobs_per_s": jobs / (time.perf_counter() - started)}


def cluster_phases(workdir: Path, sizes: Sizes) -> dict[str, float]:
    figures: dict[str, float] = {}
    if not sizes.phases & {"drain", "mix", "latency", "array"}:
        return figures
    with LocalCluster(workdir / "cluster", server_args=SERVER_ARGS) as cluster:
        cluster.start_server()
        names = [f"bench-{n:02d}" for n in range(AGENTS)]
        for name in names:
            cluster.start_agent(name, GPU_SPEC, "--log-level", "warning")
        cluster.wait_for_nodes(names, timeout_s=120)
        with cluster.client(timeout_s=300) as client:
            if sizes.history:
                figures |= grow_history(cluster, client, sizes.history)
            if "drain" in sizes.phases:
                drained = drain(cluster, client, [true_job()] * sizes.jobs)
                figures |= drained.figures("drain_1gpu")
            if "mix" in sizes.phases:
                figures |= drain_mix(cluster, client, sizes)
            if "latency" in sizes.phases:
                figures |= start_latency(client, workdir, sizes.probes)
            if "array" in sizes.phases:
                figures |= array_phase(client, sizes.jobs)
    return figures


def jobs_page_ms(client: CorralClient, pages: int = 20) -> float:
    """The median wall of one page of ``corral jobs`` (its API call, newest first)."""
    walls = []
    for _ in range(pages):
        started = time.perf_counter()
        client.list_jobs(limit=50)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls) * 1000


def grow_history(cluster: LocalCluster, client: CorralClient, count: int) -> dict[str, float]:
    """Seed ``count`` finished jobs into the running server's database; a full page of
    jobs timed before (a first page of finished jobs run here) and after."""
    from benchmarks.load_db import seed_history  # only this option needs it

    client.submit_batch([true_job()] * 50)
    wait_until_drained(client)
    before = jobs_page_ms(client)
    db = Database(sqlite_url(cluster.data_dir / "server"))
    try:
        seed_history(db, count)
    finally:
        db.dispose()
    return {
        "history_jobs": float(count),
        "jobs_page_ms_before": before,
        "jobs_page_ms_grown": jobs_page_ms(client),
    }


def one_run(sizes: Sizes) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        submitted = submit_phases(workdir, sizes) if "submit" in sizes.phases else {}
        return submitted | cluster_phases(workdir, sizes)


# -- report -----------------------------------------------------------------------------

ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("submit_cli_jobs_per_s", "submit, one `corral submit` per job", "{:.1f} jobs/s".format),
    ("submit_batch_jobs_per_s", "submit, batch endpoint", "{:.0f} jobs/s".format),
    ("drain_1gpu_jobs_per_s", "drain 1-GPU `true` jobs", "{:.0f} jobs/s".format),
    ("drain_1gpu_server_cpu_ms_per_job", "  server CPU per job", "{:.1f} ms".format),
    ("drain_1gpu_agents_cpu_ms_per_job", "  agents CPU per job", "{:.1f} ms".format),
    ("drain_mix_jobs_per_s", "drain a 1/2/4/8-GPU mix", "{:.0f} jobs/s".format),
    ("drain_mix_server_cpu_ms_per_job", "  server CPU per job", "{:.1f} ms".format),
    ("drain_mix_agents_cpu_ms_per_job", "  agents CPU per job", "{:.1f} ms".format),
    ("drain_mix_idle_while_needed_pct", "  GPU time idle while a job fit", "{:.1f} %".format),
    ("drain_mix_rounds_leaving_a_fit_pct", "  cycles that left a job that fit", "{:.1f} %".format),
    ("start_latency_p50_ms", "submit -> first command, p50", "{:.0f} ms".format),
    ("history_jobs", "finished jobs seeded before the phases", "{:,.0f}".format),
    ("jobs_page_ms_before", "  a page of `corral jobs`, before", "{:.1f} ms".format),
    ("jobs_page_ms_grown", "  the same, after", "{:.1f} ms".format),
    ("array_jobs_per_s", "job array, submit -> all done", "{:.0f} jobs/s".format),
    ("cli_submit_wall_p50_ms", "`corral submit` process wall, p50", "{:.0f} ms".format),
    ("cli_submit_wall_min_ms", "  min", "{:.0f} ms".format),
    ("cli_submit_wall_max_ms", "  max", "{:.0f} ms".format),
]


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def print_table(figures: dict[str, float], sizes: Sizes) -> None:
    print(f"\ncorral control plane: {AGENTS} agents x {GPUS_PER_AGENT} simulated GPUs, ", end="")
    print(f"{sizes.jobs} jobs per phase, median of {sizes.runs} run(s), {os.cpu_count()} CPUs")
    print(f"| {'phase':<36} | {'corral':>12} | {'Slurm tuned':>12} |")
    print(f"|{'-' * 38}|{'-' * 14}|{'-' * 14}|")
    for key, label, fmt in ROWS:
        if key not in figures:  # a phase not run
            continue
        slurm = SLURM_TUNED.get(key)
        theirs = fmt(slurm) if slurm is not None else ""
        print(f"| {label:<36} | {fmt(figures[key]):>12} | {theirs:>12} |")


def parse_args(argv: list[str] | None) -> tuple[Sizes, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 jobs, 20 CLI submits, 1 run")
    parser.add_argument("--runs", type=int, help="runs to take the median of [3]")
    parser.add_argument("--jobs", type=int, help="jobs per drain phase and array [1000]")
    parser.add_argument("--cli-jobs", type=int, help="corral submit processes [--jobs]")
    parser.add_argument("--probes", type=int, help="start-latency probes [30]")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--history", type=int, default=0, help="finished jobs to seed the database with [0]"
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated phases to run, of {','.join(PHASES)} [all]",
    )
    args = parser.parse_args(argv)
    phases = frozenset(name.strip() for name in args.phases.split(",") if name.strip())
    if not phases or not phases <= set(PHASES):
        parser.error(f"--phases: choose from {','.join(PHASES)}, not {args.phases!r}")
    jobs = args.jobs or (100 if args.quick else 1000)
    sizes = Sizes(
        jobs=jobs,
        cli_jobs=args.cli_jobs or (20 if args.quick else jobs),
        probes=args.probes or (5 if args.quick else 30),
        runs=args.runs or (1 if args.quick else 3),
        phases=phases,
        history=max(0, args.history),
    )
    return sizes, args.json


def main(argv: list[str] | None = None) -> None:
    sizes, json_path = parse_args(argv)
    runs = []
    for n in range(sizes.runs):
        print(f"run {n + 1}/{sizes.runs} ...", file=sys.stderr, flush=True)
        runs.append(one_run(sizes))
    figures = median_of(runs)
    print_table(figures, sizes)
    sized = {**sizes.__dict__, "phases": [p for p in PHASES if p in sizes.phases]}
    report: dict[str, Any] = {"sizes": sized, "median": figures, "runs": runs}
    print(json.dumps(report, indent=2))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
