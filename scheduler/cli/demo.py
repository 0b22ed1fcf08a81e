"""``corral demo``: a real local cluster, a handful of real jobs, a summary, a clean exit.

It starts a server on SQLite in a temporary data dir and two agents with simulated
GPUs (each its own process), creates two queues, submits jobs whose commands really
run and print, follows them as they are placed, wait, run, fail and retry, prints a
summary and shuts everything down. Exit 0 when every job ended as expected.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click

from scheduler.cli import render
from scheduler.cli.config import CliError
from scheduler.client import CorralClient, is_terminal
from scheduler.domain.spec import JobSpec, QueueSpec, Resources
from scheduler.domain.views import JobView
from scheduler.localcluster import ClusterError, LocalCluster

NODES = {"node-a": "sim:4xA100-80GB", "node-b": "sim:2xH100-80GB"}

TRAIN = """
import os, time
node, gpus = os.environ["CORRAL_NODE_RANK"], os.environ["CUDA_VISIBLE_DEVICES"]
print(f"{os.environ['CORRAL_JOB_NAME']}: attempt {os.environ['CORRAL_ATTEMPT']} on GPUs {gpus}")
loss = 2.0
for step in range(1, STEPS + 1):
    loss *= 0.8
    print(f"step {step:2d}  loss {loss:.3f}", flush=True)
    time.sleep(0.25)
print("done; checkpoints in", os.environ["CORRAL_CHECKPOINT_DIR"])
"""

FLAKY = """
import os, sys
print(f"preprocessing shard on GPUs {os.environ['CUDA_VISIBLE_DEVICES']}: corrupt input!")
sys.exit(3)
"""


@dataclass(frozen=True)
class DemoJob:
    spec: JobSpec
    expect: str  # the final status this job must reach


def _python(code: str, **subs: int) -> list[str]:
    for key, value in subs.items():
        code = code.replace(key, str(value))
    return [sys.executable, "-c", code]


def demo_jobs() -> list[DemoJob]:
    def job(
        name: str, queue: str, gpus: int, steps: int, gpu_type: str | None = None, priority: int = 0
    ) -> JobSpec:
        return JobSpec(
            name=name,
            queue=queue,
            resources=Resources(gpus=gpus, gpu_type=gpu_type),
            command=_python(TRAIN, STEPS=steps),
            priority=priority,
        )

    return [
        DemoJob(job("bert-finetune", "research", 2, 12, gpu_type="A100-80GB"), "succeeded"),
        DemoJob(job("resnet-sweep-1", "research", 1, 6), "succeeded"),
        DemoJob(job("resnet-sweep-2", "research", 1, 6), "succeeded"),
        DemoJob(
            job("batch-infer", "production", 1, 5, gpu_type="H100-80GB", priority=10), "succeeded"
        ),
        DemoJob(job("nightly-eval", "production", 4, 4, gpu_type="A100-80GB"), "succeeded"),
        DemoJob(
            JobSpec(
                name="flaky-preprocess", queue="research", command=_python(FLAKY), max_retries=1
            ),
            "failed",
        ),
    ]


class Watcher:
    """Prints one line each time a job's status (or wait reason) changes."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.seen: dict[int, tuple[str, str | None, int]] = {}

    def update(self, jobs: list[JobView]) -> None:
        for job in sorted(jobs, key=lambda j: j.id):
            key = (job.status, job.wait_reason, job.attempts_count)
            if self.seen.get(job.id) == key:
                continue
            self.seen[job.id] = key
            render.print_line(f"[{time.monotonic() - self.started:5.1f}s] {self._line(job)}")

    @staticmethod
    def _line(job: JobView) -> str:
        head = f"job {job.id:<2} {job.name:<17} {job.status:<9}"
        if job.status == "pending" and job.wait_reason:
            return f"{head} waits ({job.wait_reason}): {job.wait_message}"
        if job.status in ("starting", "running"):
            where = render.format_gpus(job.gpus) if job.gpus else ", ".join(job.nodes)
            return f"{head} attempt {job.attempts_count} on {where}"
        if job.status == "pending" and job.termination_reason:
            return f"{head} attempt {job.attempts_count} {job.termination_reason}; retry queued"
        if job.exit_code not in (None, 0):
            return f"{head} exit code {job.exit_code}"
        return head


def _run_jobs(client: CorralClient, jobs: list[DemoJob], timeout_s: float) -> list[JobView]:
    client.create_queue(QueueSpec(name="research", weight=2, guaranteed_gpus=2))
    client.create_queue(QueueSpec(name="production", weight=1, guaranteed_gpus=1))
    render.print_line("queues: research (weight 2), production (weight 1)")
    ids = [client.submit(j.spec).id for j in jobs]
    render.print_line(f"submitted {len(ids)} jobs\n")
    watcher = Watcher(time.monotonic())
    deadline = time.monotonic() + timeout_s
    while True:
        listed = {v.id: v for v in client.list_jobs(limit=len(ids)).jobs}  # one consistent read
        views = [listed[i] for i in ids]
        watcher.update(views)
        if all(is_terminal(v.status) for v in views):
            return views
        if time.monotonic() > deadline:
            raise CliError(f"jobs still running after {timeout_s:.0f}s")
        time.sleep(0.2)


def _summary(client: CorralClient, views: list[JobView]) -> None:
    grid = render.table("ID", "NAME", "QUEUE", "STATUS", "ATTEMPTS", "GPUS", "EXIT", "RAN")
    for view in views:
        detail = client.get_job(view.id)
        last = detail.attempts[-1] if detail.attempts else None
        ran = (
            (last.ended_at - last.started_at).total_seconds()
            if last and last.started_at and last.ended_at
            else None
        )
        render.add_row(
            grid, view.id, view.name, view.queue, view.status, view.attempts_count,
            render.format_gpus(last.gpus) if last else None, view.exit_code,
            render.format_duration(ran),
        )  # fmt: skip
    render.print_line("")
    render.print_table(grid)
    first = views[0]
    chunk = client.logs(first.id)
    render.print_line(f"\noutput of job {first.id} ({first.name}), `corral logs {first.id}`:")
    render.print_line("  " + "\n  ".join(chunk.data.rstrip().splitlines()[-5:]))


@click.command(
    epilog="""Examples:

\b
  corral demo
  corral demo --keep          # keep the data dir to look at the database and logs
"""
)
@click.option("--keep", is_flag=True, help="keep the temporary data dir and print its path")
@click.option("--timeout-s", default=120.0, show_default=True, type=click.FloatRange(5))
def demo(keep: bool, timeout_s: float) -> None:
    """Run a local cluster (server + 2 agents, simulated GPUs) with a few real jobs."""
    data_dir = Path(tempfile.mkdtemp(prefix="corral-demo-"))
    jobs = demo_jobs()
    cluster = LocalCluster(data_dir, server_args=("--retry-backoff-s", "1"))
    try:
        with cluster:
            render.print_line(f"starting a server (SQLite in {data_dir}) and 2 agents ...")
            cluster.start_server()
            for name, gpus in NODES.items():
                cluster.start_agent(name, gpus)
            cluster.wait_for_nodes(list(NODES))
            render.print_line(
                f"server {cluster.url}; nodes: "
                + ", ".join(f"{n} ({g.removeprefix('sim:')})" for n, g in NODES.items())
            )
            with cluster.client() as client:
                views = _run_jobs(client, jobs, timeout_s)
                _summary(client, views)
            render.print_line("\nstopping the agents and the server ...")
    except ClusterError as exc:
        raise CliError(str(exc)) from None
    finally:
        if keep:
            render.print_line(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    wrong = [
        f"{v.name} ended {v.status}, expected {j.expect}"
        for v, j in zip(views, jobs, strict=True)
        if v.status != j.expect
    ]
    if wrong:
        raise CliError("demo jobs did not end as expected: " + "; ".join(wrong))
    render.print_line("demo finished: every job ended as expected")
