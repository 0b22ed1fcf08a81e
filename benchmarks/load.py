"""Load: 1,000 simulated agents syncing every 5 s with one server on PostgreSQL.

Starts a private PostgreSQL (``initdb``/``pg_ctl``, as the tests do; or ``--database-url``
names a server to create a fresh database on) and one ``corral server`` on it, then:

1. **agents**: ``--agents`` simulated agents in this process (one asyncio loop; each
   agent on its own keep-alive connection through a minimal HTTP/1.1 client,
   ``benchmarks.load_http``, so that the generator's own work per sync stays small;
   plain HTTP only, no TLS: the server is on loopback), each a node of
   ``--gpus-per-agent`` GPUs with its own agent token, speaking the real sync protocol
   (``scheduler.domain.sync``): node facts, a host and GPU sample per GPU, every
   attempt it holds. Each syncs every ``--interval-s`` (a short poll, so the timed
   request is the server's work, not a held long poll), starts on its first
   sync at a random moment of the interval, runs what the reply's ``run`` lists for
   a time drawn evenly between half and one and a half ``--job-s`` (``--fixed-job-s``:
   exactly ``--job-s``, so that jobs placed together end together, in waves that a real
   cluster's mix of lengths does not make) and then reports it exited 0; a ``stop``
   ends it at once.
2. **history**: ``--jobs`` jobs in the system. All but ``--pending`` are finished
   history, written straight into the tables (each a succeeded job with its submitted
   and succeeded events, one attempt, its part on a node and its released allocation,
   one after another on every GPU over the past week), because running 100,000 jobs
   through the agents would take hours. The rows go through the ORM mapping
   (``scheduler.store.models``), so their columns are the schema's.
3. **pending**: ``--pending`` jobs of 1, 2 or 4 GPUs through the batch endpoint
   (``POST /api/v1/jobs/batch``), more than the cluster's GPUs, so the cycle places
   and the agents run them while a backlog waits for the whole run.
4. **measure** for ``--duration`` seconds after a warm-up of one interval: every sync's
   latency (from building the request to the parsed reply), the server process's CPU
   (``/proc/PID/stat``) and RSS (``/proc/PID/status``, sampled each second),
   PostgreSQL's CPU (the postmaster and its backends), and the scheduling cycle's
   duration from the server's ``corral_cycle_duration_seconds`` histogram
   (``/metrics``, scraped at both ends of the window: the mean, and p99 as the upper
   bound of its bucket); and from ``corral_agent_sync_duration_seconds`` the server's
   own part of a sync (parsed request to reply: what is left of the latency is HTTP,
   queueing for the server's event loop, and the generator itself); from
   ``corral_agent_report_write_seconds`` the time from a sync to the commit of the starts
   and ends it reported (the reply does not wait for it: ``corral server``'s
   ``--report-wait-s`` is 0).

Targets: sync p99 under 250 ms, the cycle under 1 s. The load generator, the server and
PostgreSQL share this machine's CPUs (``os.cpu_count()`` is in the report): a sync's
latency includes the time the generator waited for a CPU, so on a small machine the
figures are upper bounds of what the server alone would give.

    python benchmarks/load.py                   # 1,000 agents, 100,000 jobs, 120 s
    python benchmarks/load.py --quick           # 100 agents, 5,000 jobs, 30 s
    python benchmarks/load.py --agents 300 --duration 60 --json load.json

Prints a table and the figures as JSON; exit status 0 once measured (whether the
targets were met is ``targets_met`` in the JSON), 1 when the run itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a clean checkout

from benchmarks.load_db import agent_tokens, job_counts, postgres, seed_history
from benchmarks.load_http import AgentConnection, BadResponse, plain_http_address
from benchmarks.load_measure import (
    cpu_s,
    cpu_since,
    histogram_figures,
    histograms,
    postgres_pids,
    rss_mib,
    with_children,
)
from scheduler.client import CorralError
from scheduler.domain.spec import JobSpec, Resources
from scheduler.domain.sync import (
    AttemptReport,
    AttemptState,
    GpuFacts,
    GpuSample,
    HostSample,
    NodeFacts,
    SyncReply,
    SyncRequest,
)
from scheduler.localcluster import LocalCluster
from scheduler.store.db import Database

SYNC_PATH = "/api/v1/agent/sync"
TARGET_SYNC_P99_MS = 250.0
TARGET_CYCLE_S = 1.0
GPU_TYPE, GPU_MIB = "A100-80GB", 81_920
SYNC_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Sizes:
    agents: int
    jobs: int  # in the system: finished history plus pending
    pending: int
    gpus_per_agent: int
    interval_s: float
    duration_s: float
    job_s: float
    fixed_job_s: bool = False  # every job runs exactly job_s (else half to 1.5 times)
    workers: int = 1  # the server's processes (corral server --workers)


# -- simulated agents -------------------------------------------------------------------


@dataclass
class SimAttempt:
    ends_at: float
    exit_code: int | None = None  # None while it runs
    stopped: bool = False
    reported: bool = False  # its start was sent


@dataclass
class SimAgent:
    """One node's agent, reduced to the protocol: it reports, the reply says what to run."""

    name: str
    gpus: int
    job_s: float
    token: str = ""
    held: dict[int, SimAttempt] = field(default_factory=dict)
    fixed: bool = False  # every job runs exactly job_s

    def facts(self) -> NodeFacts:
        gpus = [
            GpuFacts(
                index=i,
                uuid=f"GPU-{self.name}-{i}",
                name="NVIDIA A100-SXM4-80GB",
                gpu_type=GPU_TYPE,
                memory_total_mib=GPU_MIB,
            )
            for i in range(self.gpus)
        ]
        return NodeFacts(
            name=self.name, hostname=self.name, cpus=64, memory_total_mib=512_000, gpus=gpus
        )

    def request(self, now: float) -> tuple[SyncRequest, bool]:
        """The next sync, and whether it has news for the server (a start or an end:
        the server writes those before its reply; any other sync it answers from a read)."""
        for attempt in self.held.values():
            if attempt.exit_code is None and now >= attempt.ends_at:
                attempt.exit_code = 0
        news = any(a.exit_code is not None or not a.reported for a in self.held.values())
        for attempt in self.held.values():
            attempt.reported = True
        samples = [
            GpuSample(index=i, utilization_pct=random.uniform(0, 100), memory_used_mib=1024)
            for i in range(self.gpus)
        ]
        req = SyncRequest(
            node=self.facts(),
            host=HostSample(cpu_pct=12.5, memory_used_mib=64_000, load1=3.0),
            gpu_samples=samples,
            attempts=[self._report(i, a) for i, a in self.held.items()],
        )
        return req, news

    @staticmethod
    def _report(attempt_id: int, attempt: SimAttempt) -> AttemptReport:
        if attempt.exit_code is None:
            return AttemptReport(attempt_id=attempt_id, state=AttemptState.RUNNING, pid=1000)
        return AttemptReport(
            attempt_id=attempt_id,
            state=AttemptState.EXITED,
            exit_code=attempt.exit_code,
            stopped_by_agent=attempt.stopped,
        )

    def apply(self, reply: SyncReply, now: float) -> None:
        """Start what is new, stop what is asked, forget what the server no longer lists."""
        wanted = {launch.attempt_id for launch in reply.run}
        for attempt_id in wanted - self.held.keys():
            spread = 0.0 if self.fixed else random.uniform(-0.5, 0.5) * self.job_s
            self.held[attempt_id] = SimAttempt(ends_at=now + self.job_s + spread)
        for stop in reply.stop:
            attempt = self.held.get(stop.attempt_id)
            if attempt is not None and attempt.exit_code is None:
                attempt.exit_code, attempt.stopped = -15, True
        listed = wanted | {stop.attempt_id for stop in reply.stop}
        for attempt_id in [i for i, a in self.held.items() if i not in listed]:
            if self.held[attempt_id].exit_code is not None:
                del self.held[attempt_id]  # the server holds its end
            else:
                self.held[attempt_id].exit_code = -15  # no longer wanted: stopped
                self.held[attempt_id].stopped = True


@dataclass
class Recorder:
    """What the agents saw; latencies count only while ``measuring``."""

    measuring: bool = False
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    synced: set[str] = field(default_factory=set)
    news_latencies_s: list[float] = field(default_factory=list)  # syncs with a start or end
    lags_s: list[float] = field(default_factory=list)  # the generator's own event loop
    gc_pauses_s: list[float] = field(default_factory=list)  # its full garbage collections
    _gc_began: float = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        """A ``gc.callbacks`` hook: times the generator's full (oldest generation) passes."""
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_began = time.monotonic()
        elif self.measuring:
            self.gc_pauses_s.append(time.monotonic() - self._gc_began)


async def watch_lag(rec: Recorder, stop: asyncio.Event, every_s: float = 0.1) -> None:
    """How late the generator's event loop wakes from a short sleep: a sync's latency
    includes that much of the generator's own delay, which is not the server's."""
    while not stop.is_set():
        began = time.monotonic()
        await asyncio.sleep(every_s)
        if rec.measuring:
            rec.lags_s.append(time.monotonic() - began - every_s)


async def agent_loop(
    agent: SimAgent, conn: AgentConnection, sizes: Sizes, rec: Recorder, stop: asyncio.Event
) -> None:
    """Sync every interval (the first at a random moment of it) until ``stop``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), random.uniform(0, sizes.interval_s))
    while not stop.is_set():
        began = time.monotonic()
        req, news = agent.request(began)
        try:
            async with asyncio.timeout(SYNC_TIMEOUT_S):
                status, body = await conn.post(req.model_dump_json().encode())
            if not 200 <= status < 300:
                raise BadResponse(f"HTTP {status}: {body[:200].decode(errors='replace')}")
            reply = SyncReply.model_validate_json(body)
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as err:
            if rec.measuring:
                rec.errors.append(f"{type(err).__name__}: {err}"[:300])
        else:
            if rec.measuring:
                rec.latencies_s.append(time.monotonic() - began)
                if news:
                    rec.news_latencies_s.append(time.monotonic() - began)
            rec.synced.add(agent.name)
            agent.apply(reply, time.monotonic())
        pause_s = max(0.0, sizes.interval_s - (time.monotonic() - began))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause_s)


# -- the run ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_for(what: str, check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.5)


def submit_pending(cluster: LocalCluster, count: int, gpus_per_agent: int) -> None:
    """A mix of one GPU, a whole node and two whole nodes (a gang across agents)."""
    mix = [
        Resources(gpus=1),
        Resources(gpus=gpus_per_agent),
        Resources(gpus=gpus_per_agent, nodes=2),
    ]
    specs = [JobSpec(command=["true"], resources=mix[n % len(mix)]) for n in range(count)]
    with cluster.client(timeout_s=300) as client:
        for first in range(0, count, 5000):
            client.submit_batch(specs[first : first + 5000])


class AgentThread(threading.Thread):
    """The simulated agents' event loop, in a thread so the main one can seed and measure."""

    def __init__(self, cluster: LocalCluster, sizes: Sizes, tokens: dict[str, str]) -> None:
        super().__init__(name="agents", daemon=True)
        self.cluster, self.sizes, self.rec = cluster, sizes, Recorder()
        self.tokens = tokens
        self.address = plain_http_address(cluster.url)  # refuses https before any agent starts
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as err:  # reported by the main thread
            self.failure = err

    async def _main(self) -> None:
        self.stop_event = asyncio.Event()
        sizes = self.sizes
        agents = [
            SimAgent(name, sizes.gpus_per_agent, sizes.job_s, token, fixed=sizes.fixed_job_s)
            for name, token in self.tokens.items()
        ]
        host, port = self.address
        conns = [
            AgentConnection(host, port, SYNC_PATH, a.token or self.cluster.token) for a in agents
        ]
        try:
            await asyncio.gather(
                watch_lag(self.rec, self.stop_event),
                *(
                    agent_loop(a, conn, sizes, self.rec, self.stop_event)
                    for a, conn in zip(agents, conns, strict=True)
                ),
            )
        finally:
            await asyncio.gather(*(conn.aclose() for conn in conns))

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.join(timeout=60)


def measure(
    cluster: LocalCluster, agents: AgentThread, sizes: Sizes, pg_dir: Path | None
) -> dict[str, Any]:
    """The figures of one window of ``sizes.duration_s`` seconds."""
    assert cluster.server is not None
    server = with_children(cluster.server.popen.pid)  # with --workers: the workers too
    hist_before = histograms(cluster)
    cpu_before, pg_before = cpu_s(server), cpu_s(postgres_pids(pg_dir))
    gen_before = time.process_time()
    began = time.monotonic()
    agents.rec.measuring = True
    rss = [sum(map(rss_mib, server))]
    while time.monotonic() - began < sizes.duration_s:
        time.sleep(1.0)
        rss.append(sum(map(rss_mib, server)))
    agents.rec.measuring = False
    wall_s = time.monotonic() - began
    figures = {
        "server_cpu_pct": 100 * cpu_since(cpu_before, cpu_s(server)) / wall_s,
        "postgres_cpu_pct": 100 * cpu_since(pg_before, cpu_s(postgres_pids(pg_dir))) / wall_s,
        "generator_cpu_pct": 100 * (time.process_time() - gen_before) / wall_s,
        "server_rss_mib": rss[-1],
        "server_rss_peak_mib": max(rss),
        "window_s": wall_s,
    }
    return figures | histogram_figures(hist_before, histograms(cluster))


def sync_figures(rec: Recorder, window_s: float) -> dict[str, Any]:
    ms = [s * 1000 for s in rec.latencies_s]
    return {
        "syncs": len(ms),
        "syncs_per_s": len(ms) / window_s,
        "sync_errors": len(rec.errors),
        "sync_p50_ms": percentile(ms, 0.50),
        "sync_p99_ms": percentile(ms, 0.99),
        "news_syncs": len(rec.news_latencies_s),
        "news_sync_p50_ms": percentile([t * 1000 for t in rec.news_latencies_s], 0.50),
        "news_sync_p99_ms": percentile([t * 1000 for t in rec.news_latencies_s], 0.99),
        "sync_max_ms": max(ms) if ms else None,
        "sync_mean_ms": statistics.fmean(ms) if ms else None,
        "first_errors": rec.errors[:5],
        "generator_lag_p99_ms": percentile([lag * 1000 for lag in rec.lags_s], 0.99),
        "generator_gc_max_ms": max(rec.gc_pauses_s, default=0.0) * 1000,
    }


def run(sizes: Sizes, workdir: Path, database_url: str | None) -> dict[str, Any]:
    with postgres(database_url) as (url, pg_dir):
        args: tuple[str, ...] = ("--database-url", url, "--log-level", "warning")
        args += ("--node-timeout-s", "60", "--workers", str(sizes.workers))
        with LocalCluster(workdir, server_args=args) as cluster:
            cluster.start_server()
            db = Database(url)
            try:
                names = [f"load-{n:04d}" for n in range(sizes.agents)]
                agents = AgentThread(cluster, sizes, agent_tokens(db, names))
                agents.start()
                try:
                    return _drive(cluster, agents, sizes, db, pg_dir)
                finally:
                    agents.stop()
            finally:
                db.dispose()


def _drive(
    cluster: LocalCluster, agents: AgentThread, sizes: Sizes, db: Database, pg_dir: Path | None
) -> dict[str, Any]:
    """Register, seed, submit, warm up, measure."""

    def registered() -> bool:
        if agents.failure is not None:
            raise RuntimeError(f"the agents failed: {agents.failure!r}")
        return len(agents.rec.synced) == sizes.agents

    wait_for("every agent to register", registered, 60 + sizes.agents * 0.5)
    started = time.monotonic()
    seed_history(db, sizes.jobs - sizes.pending)
    # what the seeding left alive stays out of the generator's collections, which
    # otherwise scan it all on every full pass and stall the agents' event loop
    gc.collect()
    gc.freeze()
    gc.callbacks.append(agents.rec.on_gc)
    history_s = time.monotonic() - started
    log(f"seeded {sizes.jobs - sizes.pending} finished jobs in {history_s:.0f}s")
    submit_pending(cluster, sizes.pending, sizes.gpus_per_agent)
    log(f"submitted {sizes.pending} pending jobs; warming up {sizes.interval_s:.0f}s")
    time.sleep(sizes.interval_s)
    figures = measure(cluster, agents, sizes, pg_dir)
    figures |= sync_figures(agents.rec, figures["window_s"])
    figures["jobs_by_status"] = job_counts(db)
    return figures


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- report -------------------------------------------------------------------------------


ROWS = [
    ("sync_p50_ms", "sync latency p50", "{:.1f} ms"),
    ("sync_p99_ms", "sync latency p99 (target < 250 ms)", "{:.1f} ms"),
    ("news_syncs", "  syncs with a start or an end", "{:d}"),
    ("news_sync_p50_ms", "  ... their latency p50", "{:.1f} ms"),
    ("news_sync_p99_ms", "  ... their latency p99", "{:.1f} ms"),
    ("sync_max_ms", "sync latency max", "{:.1f} ms"),
    ("sync_server_p50_le_ms", "  the server's part, p50 (bucket bound)", "<= {:g} ms"),
    ("sync_server_p99_le_ms", "  the server's part, p99 (bucket bound)", "<= {:g} ms"),
    ("reports_written", "report writes (starts, ends) committed", "{:d}"),
    ("report_write_p50_le_ms", "  sync to commit, p50 (bucket bound)", "<= {:g} ms"),
    ("report_write_p99_le_ms", "  sync to commit, p99 (bucket bound)", "<= {:g} ms"),
    ("syncs_per_s", "syncs answered", "{:.1f} /s"),
    ("sync_errors", "sync errors", "{}"),
    ("cycle_mean_s", "scheduling cycle, mean (target < 1 s)", "{:.3f} s"),
    ("cycle_p99_le_s", "scheduling cycle, p99 (bucket bound)", "<= {} s"),
    ("cycles", "cycles in the window", "{}"),
    ("server_cpu_pct", "server CPU (100 = one core)", "{:.0f} %"),
    ("server_rss_mib", "server RSS at the end", "{:.0f} MiB"),
    ("server_rss_peak_mib", "server RSS, peak", "{:.0f} MiB"),
    ("postgres_cpu_pct", "PostgreSQL CPU", "{:.0f} %"),
    ("generator_cpu_pct", "load generator CPU (this process)", "{:.0f} %"),
    ("generator_lag_p99_ms", "  its event loop's lag, p99", "{:.1f} ms"),
    ("generator_gc_max_ms", "  its longest full collection", "{:.1f} ms"),
]


def print_table(report: dict[str, Any]) -> None:
    s, f = report["sizes"], report["figures"]
    print(
        f"\ncorral load: {s['agents']} agents x {s['gpus_per_agent']} GPUs syncing every "
        f"{s['interval_s']:g} s, {s['jobs']} jobs ({s['pending']} submitted pending), "
        f"{f['window_s']:.0f} s measured, {report['cpus']} CPUs shared with the generator"
    )
    print(f"| {'figure':<40} | {'value':>14} |\n|{'-' * 42}|{'-' * 16}|")
    for key, label, fmt in ROWS:
        value = "n/a" if f.get(key) is None else fmt.format(f[key])
        print(f"| {label:<40} | {value:>14} |")


def targets_met(figures: dict[str, Any]) -> bool:
    p99, cycle = figures.get("sync_p99_ms"), figures.get("cycle_mean_s")
    return (
        p99 is not None
        and p99 < TARGET_SYNC_P99_MS
        and (figures.get("cycle_p99_le_s") or cycle or 0.0) <= TARGET_CYCLE_S
    )


def parse_args(argv: list[str] | None) -> tuple[Sizes, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 agents, 5,000 jobs, 30 s")
    parser.add_argument("--agents", type=int, help="simulated agents [1000; quick 100]")
    parser.add_argument("--jobs", type=int, help="jobs in the system [100000; quick 5000]")
    parser.add_argument("--pending", type=int, help="of them submitted pending [3000; quick 300]")
    parser.add_argument("--duration", type=float, help="measured seconds [120; quick 30]")
    parser.add_argument("--interval-s", type=float, default=5.0, help="sync period [5]")
    parser.add_argument("--gpus-per-agent", type=int, default=2, help="GPUs per node [2]")
    parser.add_argument("--job-s", type=float, default=60.0, help="a pending job's mean run [60]")
    parser.add_argument("--fixed-job-s", action="store_true", help="every job runs exactly --job-s")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (corral server --workers) [1]"
    )
    parser.add_argument("--database-url", help="a PostgreSQL server to create a database on")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = Sizes(
        agents=args.agents or (100 if quick else 1000),
        jobs=args.jobs or (5000 if quick else 100_000),
        pending=args.pending if args.pending is not None else (300 if quick else 3000),
        gpus_per_agent=args.gpus_per_agent,
        interval_s=args.interval_s,
        duration_s=args.duration or (30.0 if quick else 120.0),
        job_s=args.job_s,
        fixed_job_s=args.fixed_job_s,
        workers=args.workers,
    )
    if sizes.pending > sizes.jobs or min(sizes.agents, sizes.gpus_per_agent) < 1:
        parser.error("need --pending <= --jobs and at least one agent with one GPU")
    return sizes, args


def main(argv: list[str] | None = None) -> int:
    sizes, args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="corral-load-") as scratch:
        try:
            figures = run(sizes, Path(scratch), args.database_url)
        except (RuntimeError, OSError, CorralError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    report = {"sizes": asdict(sizes), "cpus": os.cpu_count(), "figures": figures}
    report["targets_met"] = targets_met(figures)
    print_table(report)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
