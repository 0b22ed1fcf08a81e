"""``corral demo``: a real local cluster, real training jobs, a preemption, a clean exit.

It starts a server on SQLite in a temporary data dir and two agents with simulated
GPUs (each its own process), creates two queues and submits a BERT fine-tune and a
ResNet training (the bundled workloads, on small real datasets) beside a few small jobs.
Mid-way another queue claims its guarantee: the ResNet run is preempted, checkpoints,
is requeued and resumes from its checkpoint (``scheduler.cli.demo_jobs`` tells the
scene). It follows every job as it is placed, waits, runs, fails and retries, prints a
summary with both models' held-out metrics, and shuts everything down. Exit 0 when
every job ended as expected and the ResNet run resumed from a checkpoint.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import click

from scheduler.cli import render
from scheduler.cli.config import CliError
from scheduler.cli.demo_jobs import (
    BERT,
    NODES,
    QUEUES,
    RESNET,
    first_jobs,
    missing_requirements,
    reclaiming_job,
)
from scheduler.client import CorralClient, is_terminal
from scheduler.domain.views import AttemptView, JobView
from scheduler.localcluster import ClusterError, LocalCluster


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
        if job.status == "stopping":
            return f"{head} attempt {job.attempts_count}: SIGTERM, it checkpoints and exits"
        if job.status == "pending" and job.termination_reason in ("preempted", "node_lost"):
            return f"{head} attempt {job.attempts_count} {job.termination_reason}; requeued"
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


class Scene:
    """Submits the jobs, and the reclaiming one once the ResNet run has a checkpoint."""

    def __init__(self, client: CorralClient, ray: bool) -> None:
        self.client = client
        self.jobs = first_jobs(ray)
        self.ids = [client.submit(j.spec).id for j in self.jobs]
        self.resnet_id = self.ids[[j.spec.name for j in self.jobs].index(RESNET)]
        self.reclaimed = False

    def step(self) -> None:
        if self.reclaimed:
            return
        attempts = self.client.get_job(self.resnet_id).attempts or []
        if attempts and attempts[-1].last_checkpoint_step:
            job = reclaiming_job()
            render.print_line(
                f"\n{RESNET} saved checkpoint step {attempts[-1].last_checkpoint_step}; "
                f"production submits {job.spec.name} (4 A100s, within its guarantee): "
                "research's borrowed A100s are reclaimed\n"
            )
            self.jobs.append(job)
            self.ids.append(self.client.submit(job.spec).id)
            self.reclaimed = True


def _run_jobs(client: CorralClient, ray: bool, timeout_s: float) -> tuple[Scene, list[JobView]]:
    for queue in QUEUES:
        client.create_queue(queue)
    render.print_line(
        "queues: research (weight 2, guarantee 2 GPUs), production (weight 1, guarantee 4)"
    )
    scene = Scene(client, ray)
    render.print_line(f"submitted {len(scene.ids)} jobs\n")
    watcher = Watcher(time.monotonic())
    deadline = time.monotonic() + timeout_s
    while True:
        scene.step()
        listed = {v.id: v for v in client.list_jobs(limit=50).jobs}  # one consistent read
        views = [listed[i] for i in scene.ids]
        watcher.update(views)
        if scene.reclaimed and all(is_terminal(v.status) for v in views):
            return scene, views
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


def _training_results(client: CorralClient, checkpoints: Path, scene: Scene) -> list[str]:
    """Print each model's held-out metrics and history; the problems found, if any."""
    problems = []
    render.print_line("\nheld-out metrics (macro), from each run's summary.json:")
    for job_id, job in zip(scene.ids, scene.jobs, strict=True):
        if job.spec.name not in (BERT, RESNET):
            continue
        path = checkpoints / str(job_id) / "summary.json"
        if not path.exists():
            problems.append(f"{job.spec.name} wrote no summary")
            continue
        metrics = json.loads(path.read_text())["metrics"]
        shown = "  ".join(
            f"{k} {metrics[k]:.3f}" for k in ("accuracy", "precision", "recall", "f1")
        )
        attempts = client.get_job(job_id).attempts or []
        story = ", ".join(
            f"attempt {a.number} {a.reason or a.status}"
            + (f" (resumed from step {a.resumed_from_step})" if a.resumed_from_step else "")
            for a in attempts
        )
        render.print_line(f"  {job.spec.name:<14} {shown}\n  {'':<14} {story}")
        if job.spec.name == RESNET and not _resumed(attempts):
            problems.append(f"{RESNET} was not preempted and resumed from a checkpoint")
    return problems


def _resumed(attempts: list[AttemptView]) -> bool:
    return (
        len(attempts) >= 2
        and attempts[0].reason == "preempted"
        and bool(attempts[-1].resumed_from_step)
    )


@click.command(
    epilog="""Examples:

\b
  corral demo
  corral demo --ray           # train on per-job Ray clusters (two workers each)
  corral demo --keep          # keep the data dir to look at the database and logs
"""
)
@click.option("--ray", is_flag=True, help="run the trainings on per-job Ray clusters")
@click.option("--keep", is_flag=True, help="keep the temporary data dir and print its path")
@click.option("--timeout-s", default=600.0, show_default=True, type=click.FloatRange(5))
def demo(ray: bool, keep: bool, timeout_s: float) -> None:
    """Run a local cluster (server + 2 agents, simulated GPUs): BERT, ResNet, a preemption."""
    missing = missing_requirements()
    if missing:
        raise CliError(
            "corral demo trains BERT and ResNet and needs: " + ", ".join(missing)
            + "; see the README's first command"
        )  # fmt: skip
    data_dir = Path(tempfile.mkdtemp(prefix="corral-demo-"))
    # a running attempt may be preempted after 3 s here (5 min by default): the demo is short
    server_args = ("--retry-backoff-s", "1", "--min-runtime", "3s")
    cluster = LocalCluster(data_dir, server_args=server_args)
    try:
        with cluster:
            _start(cluster, data_dir)
            with cluster.client() as client:
                scene, views = _run_jobs(client, ray, timeout_s)
                _summary(client, views)
                problems = _training_results(client, data_dir / "server" / "checkpoints", scene)
            render.print_line("\nstopping the agents and the server ...")
    except ClusterError as exc:
        raise CliError(str(exc)) from None
    finally:
        if keep:
            render.print_line(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    problems += [
        f"{v.name} ended {v.status}, expected {j.expect}"
        for v, j in zip(views, scene.jobs, strict=True)
        if v.status != j.expect
    ]
    if problems:
        raise CliError("the demo did not go as expected: " + "; ".join(problems))
    render.print_line("demo finished: every job ended as expected")


def _start(cluster: LocalCluster, data_dir: Path) -> None:
    render.print_line(f"starting a server (SQLite in {data_dir}) and 2 agents ...")
    cluster.start_server()
    for name, gpus in NODES.items():
        cluster.start_agent(name, gpus)
    cluster.wait_for_nodes(list(NODES))
    render.print_line(
        f"server {cluster.url}; nodes: "
        + ", ".join(f"{n} ({g.removeprefix('sim:')})" for n, g in NODES.items())
    )
