"""How the CLI shows things: rich tables for people, stable indented JSON for scripts.

Every value from the server is put into a table as ``rich.text.Text``, never as markup,
so a job named ``[red]x`` prints as typed. Times print in local time with an age;
durations in at most two units (``45s``, ``5m3s``, ``2h10m``, ``3d4h``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from scheduler.domain.views import AttemptView, EventView, GpuRefView, JobList, JobView

DASH = "-"
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


PIPE_WIDTH = 4096


def console() -> Console:
    """A console on the current stdout: plain text, never wrapped, when not a terminal."""
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(highlight=False, soft_wrap=False, width=PIPE_WIDTH)
    return out


def echo_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    """``model_dump(mode="json")`` of a view (or a list/dict of them), indented by 2."""
    click.echo(json.dumps(_jsonable(value), indent=2))


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def now_utc() -> datetime:
    return datetime.now(UTC)


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``1h2m``: the two largest units, a zero second unit left out."""
    if seconds is None:
        return DASH
    left = max(0, int(seconds))
    counts = []
    for unit, size in _UNITS:
        count, left = divmod(left, size)
        counts.append((count, unit))
    first = next((i for i, (count, _) in enumerate(counts) if count), len(counts) - 1)
    shown = [f"{count}{unit}" for count, unit in counts[first : first + 2] if count]
    return "".join(shown) or "0s"


def age(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``moment`` was, e.g. ``5m3s``; ``-`` for None."""
    if moment is None:
        return DASH
    return format_duration(((now or now_utc()) - moment).total_seconds())


def format_time(moment: datetime | None, now: datetime | None = None) -> str:
    """Local time to the second, with the age: ``2026-11-28 16:20:05 (5m ago)``."""
    if moment is None:
        return DASH
    local = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return f"{local} ({age(moment, now)} ago)"


def format_eta(moment: datetime | None, now: datetime | None = None) -> str:
    """A moment expected later: ``2026-11-28 16:25:05 (in 5m)``; ``(now)`` once it is due."""
    if moment is None:
        return DASH
    local = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    left_s = (moment - (now or now_utc())).total_seconds()
    return f"{local} ({'in ' + format_duration(left_s) if left_s >= 1 else 'now'})"


def format_mib(mib: float | None) -> str:
    """``81920`` -> ``80G``; ``512`` -> ``512M``."""
    if mib is None:
        return DASH
    if mib >= 1024:
        return f"{mib / 1024:.3g}G"
    return f"{mib:.0f}M"


def format_pct(value: float | None) -> str:
    return DASH if value is None else f"{value:.0f}%"


def format_gpus(gpus: Iterable[GpuRefView]) -> str:
    """GPUs grouped by node: ``a:0,1 b:0``."""
    by_node: dict[str, list[str]] = {}
    for gpu in gpus:
        by_node.setdefault(gpu.node, []).append(str(gpu.index))
    return " ".join(f"{node}:{','.join(idx)}" for node, idx in by_node.items()) or DASH


def text(value: object) -> Text:
    return Text(DASH if value is None or value == "" else str(value))


def table(*columns: str, title: str | None = None) -> Table:
    grid = Table(title=title, box=None, header_style="bold", pad_edge=False, title_justify="left")
    for column in columns:
        grid.add_column(column, overflow="fold")
    return grid


def add_row(grid: Table, *values: object) -> None:
    grid.add_row(*(text(value) for value in values))


def print_table(grid: Table) -> None:
    console().print(grid)


def print_fields(rows: Sequence[tuple[str, object]]) -> None:
    """``key: value`` lines, keys aligned; values printed literally."""
    width = max((len(key) for key, _ in rows), default=0) + 1
    out = console()
    for key, value in rows:
        out.print(Text(f"{key + ':':<{width}} ") + text(value), soft_wrap=True)


def print_line(message: str, err: bool = False) -> None:
    click.echo(message, err=err)


# -- jobs -------------------------------------------------------------------------


def command_text(spec: dict[str, Any]) -> str:
    command = spec.get("command")
    if isinstance(command, list):
        return shlex.join(str(part) for part in command)
    return str(command or DASH)


def requested(spec: dict[str, Any]) -> tuple[int, int]:
    """(GPUs per node, nodes) asked for by a stored spec."""
    resources = spec.get("resources") or {}
    return int(resources.get("gpus", 1)), int(resources.get("nodes", 1))


def resources_text(spec: dict[str, Any]) -> str:
    """``2 GPUs x 2 nodes, A100-80GB, >=40G GPU memory, 8 CPUs, 64G memory``."""
    resources = spec.get("resources") or {}
    gpus, nodes = requested(spec)
    parts = [f"{gpus} GPU{'s' if gpus != 1 else ''} x {nodes} node{'s' if nodes != 1 else ''}"]
    if resources.get("gpu_type"):
        parts.append(str(resources["gpu_type"]))
    if resources.get("gpu_memory_mib"):
        parts.append(f">={format_mib(resources['gpu_memory_mib'])} GPU memory")
    if resources.get("cpus"):
        parts.append(f"{resources['cpus']:g} CPUs")
    if resources.get("memory_mib"):
        parts.append(f"{format_mib(resources['memory_mib'])} memory")
    return ", ".join(parts)


def job_reason(job: JobView) -> str | None:
    """Why a job waits, with its place in its queue (``insufficient_gpus #3``), or how it
    ended."""
    if job.status == "pending":
        if job.wait_reason and job.wait_position is not None:
            return f"{job.wait_reason} #{job.wait_position}"
        return job.wait_reason
    if job.idle_since is not None:  # allocated but idle (the server's idle loop)
        return f"IDLE since {_short_time(job.idle_since)}"
    return job.termination_reason


def print_jobs(found: JobList, now: datetime | None = None) -> None:
    grid = table("ID", "NAME", "QUEUE", "STATUS", "GPUS", "NODES", "AGE", "REASON")
    for job in found.jobs:
        gpus, nodes = requested(job.spec)
        where = ",".join(job.nodes) if job.nodes else str(nodes)
        add_row(
            grid,
            job.id,
            job.name,
            job.queue,
            job.status,
            gpus * nodes,
            where,
            age(job.submitted_at, now),
            job_reason(job),
        )
    print_table(grid)
    if found.next_before_id is not None:
        print_line(f"(more: --all, or --limit above {len(found.jobs)})", err=True)


def print_job(job: JobView, now: datetime | None = None) -> None:
    """The job's fields, then a table of its attempts and one of its events."""
    rows: list[tuple[str, object]] = [
        ("job", f"{job.id} ({job.name})"),
        ("queue", job.queue),
        ("priority", job.priority),
        ("status", job.status),
    ]
    if job.status == "pending" and (job.wait_reason or job.wait_message):
        rows.append(("waiting", _joined(job.wait_reason, job.wait_message)))
        if job.wait_position is not None:
            rows.append(("position", f"{job.wait_position} in queue {job.queue}"))
        if job.wait_estimated_start is not None:
            rows.append(("estimated start", format_eta(job.wait_estimated_start, now)))
    rows += [
        ("command", command_text(job.spec)),
        ("resources", resources_text(job.spec)),
        ("submitted", format_time(job.submitted_at, now)),
        ("started", format_time(job.started_at, now)),
        ("ended", format_time(job.ended_at, now)),
        ("gpus", format_gpus(job.gpus)),
        *_idle_rows(job, now),
        ("retries", f"{job.retries_used} of {job.spec.get('max_retries', 0)} used"),
    ]
    rows += _stop_rules(job.spec)
    if job.termination_reason or job.exit_code is not None:
        rows.append(("result", _joined(job.termination_reason, _exit(job.exit_code))))
    print_fields(rows)
    if job.attempts:
        print_attempts(job.attempts, now)
    if job.events:
        print_events(job.events)


def _idle_rows(job: JobView, now: datetime | None) -> list[tuple[str, object]]:
    """Allocated but idle: since when its GPUs have all stayed under the threshold."""
    if job.idle_since is None:
        return []
    return [("idle", f"its GPUs are idle since {format_time(job.idle_since, now)}")]


def _stop_rules(spec: dict[str, Any]) -> list[tuple[str, object]]:
    """What the spec says about retries and notice, when it says more than the defaults."""
    rows: list[tuple[str, object]] = []
    retried = []
    if spec.get("retry_on_exit_codes"):
        retried.append("exit codes " + ", ".join(map(str, spec["retry_on_exit_codes"])))
    if spec.get("retry_on_timeout"):
        retried.append("timeout")
    if retried:
        rows.append(("retry on", "; ".join(retried)))
    notice = spec.get("signal")
    if notice:
        name = str(notice["name"])
        signal = f"signal {name}" if name.isdigit() else f"SIG{name}"
        text = f"{signal} {notice['notice_s']}s before a time limit or preemption"
        rows.append(("notice", text))
    return rows


def print_attempts(attempts: Sequence[AttemptView], now: datetime | None = None) -> None:
    """One row per attempt; GPU-TIME is GPU-seconds held (as a duration), RESUMED the
    checkpoint it started from, AT RISK what stopping it now would lose."""
    grid = table(
        "#",
        "STATUS",
        "NODES",
        "GPUS",
        "STARTED",
        "ENDED",
        "GPU-TIME",
        "RESUMED",
        "CHECKPOINT",
        "AT RISK",
        "REASON",
        "EXIT",
        title="attempts",
    )
    for attempt in attempts:
        add_row(
            grid,
            attempt.number,
            attempt.status,
            ",".join(attempt.nodes),
            format_gpus(attempt.gpus),
            _short_time(attempt.started_at),
            _short_time(attempt.ended_at),
            format_duration(attempt.gpu_seconds),
            resumed_text(attempt.resumed_from_step),
            checkpoint_text(attempt),
            DASH
            if attempt.work_at_risk_gpu_s is None
            else format_duration(attempt.work_at_risk_gpu_s),
            _joined(attempt.reason, attempt.message),
            attempt.exit_code,
        )
    print_line("")
    print_table(grid)


def resumed_text(step: int | None) -> str:
    """The checkpoint an attempt started from: ``step 80``, ``scratch`` (0), or ``-``."""
    if step is None:
        return DASH
    return "scratch" if step == 0 else f"step {step}"


def checkpoint_text(attempt: AttemptView) -> str:
    """Its last checkpoint: ``step 120 at 11-28 16:03:05``, either part, or ``-``."""
    parts = []
    if attempt.last_checkpoint_step is not None:
        parts.append(f"step {attempt.last_checkpoint_step}")
    if attempt.last_checkpoint_at is not None:
        parts.append(f"at {_short_time(attempt.last_checkpoint_at)}")
    return " ".join(parts) or DASH


def print_events(events: Sequence[EventView]) -> None:
    grid = table("AT", "KIND", "CHANGE", "MESSAGE", title="events")
    for event in events:
        change = event.new_status
        if event.old_status and event.new_status:
            change = f"{event.old_status} -> {event.new_status}"
        add_row(grid, _short_time(event.at), event.kind, change, event.message)
    print_line("")
    print_table(grid)


def job_started(job: JobView) -> str:
    where = ", ".join(job.nodes) or DASH
    return (
        f"job {job.id} running on {where} (GPUs {format_gpus(job.gpus)}), "
        f"attempt {job.attempts_count}"
    )


def job_outcome(job: JobView) -> str:
    detail = _joined(
        job.termination_reason if job.termination_reason != job.status else None,
        _exit(job.exit_code) if job.status == "failed" else None,
    )
    return f"job {job.id} {job.status}" + (f" ({detail})" if detail else "")


def job_cancelled(job: JobView) -> str:
    if job.status == "cancelled":
        return f"cancelled job {job.id} ({job.name})"
    return f"cancelling job {job.id} ({job.name}): {job.status}"


def _exit(code: int | None) -> str | None:
    return None if code is None else f"exit code {code}"


def _joined(*parts: str | None) -> str:
    return ": ".join(part for part in parts if part)


def _short_time(moment: datetime | None) -> str:
    return DASH if moment is None else moment.astimezone().strftime("%m-%d %H:%M:%S")
