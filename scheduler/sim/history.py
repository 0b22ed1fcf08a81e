"""corral's own JSONL export of job history: one job per line, read back as ``TraceJob``s.

One line per job (``corral jobs --export FILE`` writes it with ``history_line``, from
``GET /api/v1/history/jobs``), fields:

- ``id`` (int), ``queue`` (str), ``status`` (a job status, e.g. ``succeeded``)
- ``submitted_at``, ``started_at``, ``ended_at``: ISO 8601 (UTC when no zone is given)
  or seconds since the epoch; ``started_at``/``ended_at`` null when the job never ran
- ``gpus`` (GPUs per node, as in a job spec), ``nodes`` (default 1)
- ``gpu_type`` (str or null), ``priority`` (int, default 0)
- ``run_s`` (optional): GPU-holding seconds over all its attempts

The replayed runtime is ``run_s`` when present, else ``ended_at - started_at``. A job
that never ran or asked no GPU is left out and listed as skipped; unknown keys are
ignored, so the export may grow. Example line::

    {"id": 7, "queue": "research", "submitted_at": "2026-01-01T12:00:00+00:00",
     "started_at": "2026-01-01T12:05:00+00:00", "ended_at": "2026-01-01T13:05:00+00:00",
     "gpus": 4, "nodes": 2, "gpu_type": "A100-80GB", "priority": 0, "status": "succeeded"}

replays as an 8-GPU job (2 nodes x 4) of 3,600 s submitted at 12:00.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scheduler.domain.status import JobStatus
from scheduler.sim.rows import BadRow, Outcome, RowProblem, Skip, TraceJob, collect, parse_time


def read_history(path: Path, *, strict: bool = True) -> tuple[list[TraceJob], list[RowProblem]]:
    """Every line of the export; the row number is the line number, blank lines ignored."""
    with path.open(encoding="utf-8") as f:
        return collect(str(path), _history_rows(f), strict)


def _history_rows(lines: Iterable[str]) -> Iterator[tuple[int, Outcome]]:
    for row, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            yield row, f"not JSON: {err.msg} at column {err.colno}"
            continue
        if not isinstance(record, dict):
            yield row, "not a JSON object"
            continue
        try:
            yield row, parse_history_record(record)
        except BadRow as err:
            yield row, str(err)


def parse_history_record(record: dict[str, Any]) -> TraceJob | Skip:
    """One line of the export as a job, or a Skip for a job that never ran or has no GPU."""
    status = _field(record, "status", str)
    if status not in {s.value for s in JobStatus}:
        raise BadRow(f"status {status!r} is not a job status")
    gpus = _field(record, "gpus", int, minimum=0)
    nodes = _field(record, "nodes", int, minimum=1, default=1)
    submitted = _moment(record, "submitted_at")
    if submitted is None:
        raise BadRow("submitted_at is missing")
    started, ended = _moment(record, "started_at"), _moment(record, "ended_at")
    if started is None or ended is None:
        return Skip(f"job {record.get('id')} never ran ({status})")
    if gpus == 0:
        return Skip(f"job {record.get('id')} asked no GPU")
    if ended < started or started < submitted:
        raise BadRow("times out of order: need submitted_at <= started_at <= ended_at")
    run_s = record.get("run_s")
    duration = ended - started if run_s is None else _field(record, "run_s", float, minimum=0.0)
    gpu_type = record.get("gpu_type")
    if gpu_type is not None and not isinstance(gpu_type, str):
        raise BadRow("gpu_type must be a string or null")
    return TraceJob(
        job_id=_field(record, "id", int, minimum=0),
        queue=_field(record, "queue", str),
        submitted_at=submitted,
        duration_s=duration,
        gpus=gpus * nodes,
        nodes=nodes,
        gpu_type=gpu_type or None,
        priority=_field(record, "priority", int, default=0),
    )


def _field(
    record: dict[str, Any],
    key: str,
    kind: type[Any],
    *,
    minimum: float | None = None,
    default: Any = None,
) -> Any:
    value = record.get(key)
    if value is None:
        if default is None:
            raise BadRow(f"{key} is missing")
        return default
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or (kind is str and not value.strip()):
        raise BadRow(f"{key} {value!r} is not a{'n' if kind is int else ''} {kind.__name__}")
    if minimum is not None and value < minimum:
        raise BadRow(f"{key} {value!r} is below {minimum:g}")
    return float(value) if kind is float else value


def _moment(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError:
            pass
    raise BadRow(f"{key} {value!r} is not an ISO 8601 time or seconds since the epoch")


def history_line(
    job_id: int,
    queue: str,
    submitted_at: datetime,
    started_at: datetime | None,
    ended_at: datetime | None,
    gpus: int,
    nodes: int,
    status: str,
    *,
    gpu_type: str | None = None,
    priority: int = 0,
    run_s: float | None = None,
) -> str:
    """One line of the export, as ``corral jobs --export`` writes it (no newline)."""

    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(UTC).isoformat()

    record: dict[str, Any] = {
        "id": job_id,
        "queue": queue,
        "submitted_at": iso(submitted_at),
        "started_at": iso(started_at),
        "ended_at": iso(ended_at),
        "gpus": gpus,
        "nodes": nodes,
        "gpu_type": gpu_type,
        "priority": priority,
        "status": status,
    }
    if run_s is not None:
        record["run_s"] = run_s
    return json.dumps(record)
