"""``corral top``: a live full-screen view of nodes x GPUs, the running jobs and the head
of each queue, refreshed in place.

Each refresh is a few API calls (nodes, each node's GPUs, live and pending jobs,
queues) turned into one frame by pure functions. ``q`` quits: keys are read from the
terminal in cbreak mode (no Enter needed), and the terminal is restored on the way out,
also after Ctrl-C. ``--once`` prints a single frame, for scripts.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import datetime

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from scheduler.cli import render
from scheduler.cli.config import cli_context
from scheduler.client import CorralClient
from scheduler.domain.views import GpuInfo, JobView, NodeInfo, QueueInfo

BAR_WIDTH = 12
LIVE_STATUSES = ["starting", "running", "stopping"]
QUIT_KEYS = {"q", "Q"}


@dataclass(frozen=True)
class TopData:
    """What one frame shows, as the API returned it."""

    server: str
    nodes: list[NodeInfo]
    running: list[JobView]
    queues: list[QueueInfo]
    heads: dict[str, JobView] = field(default_factory=dict)  # queue -> next pending job


def fetch(client: CorralClient, limit: int = 200) -> TopData:
    nodes = [client.get_node(n.name) for n in client.list_nodes().nodes]
    running = client.list_jobs(status=LIVE_STATUSES, limit=limit).jobs
    pending = client.list_jobs(status=["pending"], limit=limit).jobs
    return TopData(
        server=client.server,
        nodes=nodes,
        running=sorted(running, key=lambda j: j.id),
        queues=client.list_queues().queues,
        heads=queue_heads(pending),
    )


def queue_heads(pending: list[JobView]) -> dict[str, JobView]:
    """The pending job of each queue that is next in line (lowest position, then oldest)."""
    heads: dict[str, JobView] = {}
    for job in sorted(pending, key=lambda j: (j.wait_position or 1 << 30, j.submitted_at)):
        heads.setdefault(job.queue, job)
    return heads


def bar(pct: float | None, width: int = BAR_WIDTH) -> Text:
    """``█████░░░░░  50%``, green under 30 %, yellow under 70 %, red above."""
    if pct is None:
        return Text("·" * width + "    -", style="dim")
    filled = round(max(0.0, min(100.0, pct)) / 100 * width)
    style = "green" if pct < 30 else "yellow" if pct < 70 else "red"
    return Text.assemble(("█" * filled, style), ("░" * (width - filled), "dim"), f" {pct:3.0f}%")


def frame(data: TopData, now: datetime) -> RenderableType:
    return Group(
        header(data, now),
        gpu_table(data.nodes),
        running_table(data.running, now),
        queue_table(data.queues, data.heads),
    )


def header(data: TopData, now: datetime) -> Text:
    total = sum(n.gpus_total for n in data.nodes)
    allocated = sum(n.gpus_allocated for n in data.nodes)
    utils = [g.utilization_pct for n in data.nodes for g in n.gpus or [] if g.utilization_pct]
    mean = sum(utils) / len(utils) if utils else None
    return Text.assemble(
        ("corral top", "bold"),
        f"  {data.server}  {now.astimezone():%H:%M:%S}  ",
        f"{len(data.nodes)} node(s), {allocated}/{total} GPUs allocated, ",
        f"mean util {render.format_pct(mean)}, {len(data.running)} running  ",
        ("(q quits)", "dim"),
    )


def gpu_table(nodes: list[NodeInfo]) -> Table:
    grid = render.table("NODE", "STATE", "GPU", "TYPE", "UTIL", "MEMORY", "TEMP", "JOB")
    for node in nodes:
        for gpu in node.gpus or []:
            grid.add_row(
                render.text(node.name),
                render.text(node.state),
                render.text(gpu.index),
                render.text(gpu.gpu_type),
                bar(gpu.utilization_pct),
                render.text(_memory(gpu)),
                render.text(None if gpu.temperature_c is None else f"{gpu.temperature_c:.0f}C"),
                _holder(gpu),
            )
        if not node.gpus:
            grid.add_row(render.text(node.name), render.text(node.state), render.text(None))
    return grid


def _memory(gpu: GpuInfo) -> str:
    total = render.format_mib(gpu.memory_total_mib)
    return (
        total
        if gpu.memory_used_mib is None
        else f"{render.format_mib(gpu.memory_used_mib)}/{total}"
    )


def _holder(gpu: GpuInfo) -> Text:
    if not gpu.healthy:
        return Text("UNHEALTHY", style="bold red")
    if gpu.job_id is None:
        return Text("free", style="dim")
    return Text(f"job {gpu.job_id}", style="cyan")


def running_table(jobs: list[JobView], now: datetime) -> Table:
    grid = render.table("ID", "NAME", "QUEUE", "STATUS", "GPUS", "RUNNING", "IDLE", title="jobs")
    for job in jobs:
        runtime = None if job.started_at is None else (now - job.started_at).total_seconds()
        idle = None if job.idle_since is None else render.age(job.idle_since, now)
        render.add_row(
            grid,
            job.id,
            job.name,
            job.queue,
            job.status,
            render.format_gpus(job.gpus),
            None if runtime is None else render.format_duration(runtime),
            idle,
        )
    return grid


def queue_table(queues: list[QueueInfo], heads: dict[str, JobView]) -> Table:
    grid = render.table(
        "QUEUE", "HELD", "FAIR SHARE", "GUARANTEED", "PENDING", "NEXT", title="queues"
    )
    for queue in queues:
        head = heads.get(queue.name)
        render.add_row(
            grid,
            queue.name,
            queue.allocated_gpus,
            f"{queue.fair_share_gpus:.1f}",
            queue.guaranteed_gpus,
            queue.pending,
            None if head is None else f"job {head.id} ({head.name}): {render.job_reason(head)}",
        )
    return grid


@contextlib.contextmanager
def cbreak_keys() -> Iterator[int | None]:
    """The terminal's fd in cbreak mode (keys arrive unbuffered); None without a tty."""
    if not sys.stdin.isatty():
        yield None
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def wait_for_key(fd: int | None, timeout_s: float) -> str | None:
    """The key pressed within ``timeout_s``, or None."""
    if fd is None:
        time.sleep(timeout_s)
        return None
    ready, _, _ = select.select([fd], [], [], timeout_s)
    if not ready:
        return None
    data = os.read(fd, 32)
    return data.decode(errors="replace") if data else "q"  # end of input: quit


@click.command(
    "top",
    epilog="""Examples:

\b
  corral top
  corral top --interval 5
  corral top --once
""",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.1),
    default=2.0,
    show_default=True,
    help="seconds between refreshes",
)
@click.option("--once", is_flag=True, help="print one frame and exit")
@click.option("--json", "as_json", is_flag=True, help="print what one frame shows as JSON")
def top(interval: float, once: bool, as_json: bool) -> None:
    """A live view of nodes x GPUs with utilisation bars, running jobs and queue heads."""
    with cli_context().client() as client:
        if as_json:
            data = fetch(client)
            render.echo_json({f.name: getattr(data, f.name) for f in fields(data)})
        elif once:
            render.console().print(frame(fetch(client), render.now_utc()))
        else:
            with contextlib.suppress(KeyboardInterrupt):
                _live(client, interval)


def _live(client: CorralClient, interval: float) -> None:
    console = render.console()
    with cbreak_keys() as fd, Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            live.update(frame(fetch(client), render.now_utc()), refresh=True)
            key = wait_for_key(fd, interval)
            if key is not None and QUIT_KEYS & set(key):
                return
