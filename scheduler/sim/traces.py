"""Job traces: the published formats read into ``TraceJob``s, every row validated.

Formats (``detect_format`` tells them apart by the first line):

- ``philly``: Microsoft Philly as published with the Pollux artifact, CSV
  ``timestamp,duration,num_gpus,gpu_time,cluster``: submit time (``YYYY-MM-DD HH:MM:SS``,
  read as UTC), runtime (s), GPUs, GPU-seconds (must equal runtime x GPUs within 1 %),
  virtual cluster (the queue). Job ids are the data row numbers (1, 2, ...).
- ``alibaba``: the Alibaba PAI simulator format, CSV ``job_id,user,num_gpu,num_cpu,
  duration,submit_time,num_inst,gpu_type,...``: ``user`` is the queue, ``submit_time``
  seconds from the trace's start (``origin_s`` is added), ``num_gpu`` GPUs per instance
  times ``num_inst`` instances.
- ``corral``: corral's own JSONL export of job history (``history.py``).

A malformed row is refused with its row number (the header is row 1) and the reason,
e.g. ``philly.csv: row 7: num_gpus '0' is below 1``; ``strict=False`` skips such rows
instead and lists them in ``LoadedTrace.skipped``.

The published traces carry no user time limit. ``TimeLimits`` models the one a user
would have given: the real duration times a factor (users over-estimate), rounded up
to whole minutes as users give limits (Slurm's ``--time``). Example: ``x2`` gives a job
of 1,000 s the limit 2,040 s (2,000 s rounded up to 34 minutes).
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from scheduler.sim.history import read_history
from scheduler.sim.rows import (
    BadRow,
    Outcome,
    RowProblem,
    TraceError,
    TraceJob,
    collect,
    integer,
    number,
    text,
)

PHILLY_COLUMNS = ("timestamp", "duration", "num_gpus", "gpu_time", "cluster")
ALIBABA_COLUMNS = ("job_id", "user", "num_gpu", "duration", "submit_time", "num_inst", "gpu_type")
FORMATS = ("philly", "alibaba", "corral")
GPU_TIME_TOLERANCE = 0.01  # relative

LIMIT_GRANULARITY_S = 60  # users give time limits in whole minutes

__all__ = ["LoadedTrace", "TimeLimits", "TraceError", "TraceJob", "load_trace", "select_jobs"]


@dataclass(frozen=True)
class LoadedTrace:
    """The jobs of a trace sorted by (submit time, id), and the rows left out."""

    path: str
    format: str
    jobs: tuple[TraceJob, ...]
    skipped: tuple[RowProblem, ...] = field(default=())


def detect_format(path: Path) -> str:
    """``philly``, ``alibaba`` or ``corral`` from the first line; ValueError if none fits."""
    with path.open(encoding="utf-8", newline="") as f:
        first = f.readline().strip()
    if first.startswith("{"):
        return "corral"
    columns = {c.strip() for c in first.split(",")}
    if set(PHILLY_COLUMNS) <= columns:
        return "philly"
    if set(ALIBABA_COLUMNS) <= columns:
        return "alibaba"
    raise ValueError(
        f"{path}: unknown trace format (first line {first[:80]!r}); expected Philly "
        f"({','.join(PHILLY_COLUMNS)}), Alibaba PAI ({','.join(ALIBABA_COLUMNS)},...) "
        "or corral JSONL"
    )


def load_trace(
    path: Path, fmt: str = "auto", *, origin_s: float = 0.0, strict: bool = True
) -> LoadedTrace:
    """Read a trace file of format ``fmt`` (``auto`` detects it)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "philly":
        jobs, skipped = read_csv_rows(path, PHILLY_COLUMNS, parse_philly_row, strict)
    elif fmt == "alibaba":
        parse = _alibaba_parser(origin_s)
        jobs, skipped = read_csv_rows(path, ALIBABA_COLUMNS, parse, strict)
    elif fmt == "corral":
        jobs, skipped = read_history(path, strict=strict)
    else:
        raise ValueError(f"unknown trace format {fmt!r}; known: auto, {', '.join(FORMATS)}")
    ordered = tuple(sorted(jobs, key=lambda j: (j.submitted_at, j.job_id)))
    return LoadedTrace(str(path), fmt, ordered, tuple(skipped))


RowParser = Callable[[dict[str, str], int], TraceJob]


def read_csv_rows(
    path: Path, required: Sequence[str], parse: RowParser, strict: bool
) -> tuple[list[TraceJob], list[RowProblem]]:
    """Parse every data row; bad rows raise a TraceError (strict) or are returned."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in header]
        if missing:
            raise TraceError(str(path), [RowProblem(1, f"missing column(s) {', '.join(missing)}")])
        reader.fieldnames = header
        return collect(str(path), _numbered(reader, parse, len(header)), strict)


def _numbered(
    reader: csv.DictReader[str], parse: RowParser, width: int
) -> Iterator[tuple[int, Outcome]]:
    for index, record in enumerate(reader, start=1):
        row = reader.line_num
        if None in record or any(v is None for v in record.values()):
            yield row, f"expected {width} fields"
            continue
        try:
            yield row, parse(record, index)
        except BadRow as err:
            yield row, str(err)


def parse_philly_row(record: dict[str, str], index: int) -> TraceJob:
    """One Philly row; its job id is its data row index (1 for the first)."""
    duration = number(record, "duration", minimum=0.0)
    gpus = integer(record, "num_gpus", minimum=1)
    gpu_time = number(record, "gpu_time", minimum=0.0)
    expected = duration * gpus
    if abs(gpu_time - expected) > max(1.0, GPU_TIME_TOLERANCE * expected):
        raise BadRow(f"gpu_time {gpu_time:g} is not duration x num_gpus ({expected:g})")
    return TraceJob(
        job_id=index,
        queue=text(record, "cluster"),
        submitted_at=_timestamp(record, "timestamp"),
        duration_s=duration,
        gpus=gpus,
    )


def _alibaba_parser(origin_s: float) -> RowParser:
    def parse(record: dict[str, str], index: int) -> TraceJob:
        per_instance = integer(record, "num_gpu", minimum=1)
        instances = integer(record, "num_inst", minimum=1)
        return TraceJob(
            job_id=integer(record, "job_id", minimum=0),
            queue=text(record, "user"),
            submitted_at=origin_s + number(record, "submit_time", minimum=0.0),
            duration_s=number(record, "duration", minimum=0.0),
            gpus=per_instance * instances,
            gpu_type=record["gpu_type"].strip() or None,
        )

    return parse


def _timestamp(record: dict[str, str], column: str) -> float:
    raw = record[column].strip()
    try:
        moment = datetime.strptime(raw, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise BadRow(f"{column} {raw!r} is not YYYY-MM-DD HH:MM:SS") from None
    return moment.replace(tzinfo=UTC).timestamp()


def select_jobs(
    jobs: Sequence[TraceJob],
    *,
    start: float | None = None,
    end: float | None = None,
    limit: int | None = None,
    queues: Iterable[str] | None = None,
) -> tuple[TraceJob, ...]:
    """Jobs submitted in ``[start, end)`` to one of ``queues``, the first ``limit`` of them.

    ``jobs`` must be sorted by submit time (``load_trace`` sorts them).
    """
    wanted = set(queues) if queues is not None else None
    chosen: list[TraceJob] = []
    for job in jobs:
        if start is not None and job.submitted_at < start:
            continue
        if end is not None and job.submitted_at >= end:
            break
        if wanted is not None and job.queue not in wanted:
            continue
        chosen.append(job)
        if limit is not None and len(chosen) >= limit:
            break
    return tuple(chosen)


@dataclass(frozen=True)
class TimeLimits:
    """The user time limit each trace job gets: its duration x a factor, whole minutes up.

    ``parse`` reads the option's text: ``none`` (no limits: the trace as published),
    ``exact`` (factor 1), ``xF`` (factor F, e.g. ``x2``) or ``xA-B`` (each job's factor
    drawn log-uniformly from [A, B], from a generator seeded by ``seed`` and the job id,
    so a job gets the same limit whatever the window or order). A factor below 1 makes
    jobs reach their limit: the simulator stops them as the server does (timeout).
    """

    low: float | None = None  # None: no limits
    high: float | None = None
    seed: int = 0

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> TimeLimits:
        spec = text.strip().lower()
        if spec == "none":
            return cls(seed=seed)
        if spec == "exact":
            return cls(1.0, 1.0, seed)
        low, sep, high = spec.removeprefix("x").partition("-")
        try:
            if not spec.startswith("x"):
                raise ValueError(spec)
            factors = (float(low), float(high) if sep else float(low))
        except ValueError:
            raise ValueError(
                f"time limits {text!r}: expected none, exact, xF (e.g. x2) or xA-B (e.g. x1-10)"
            ) from None
        if not all(math.isfinite(f) and f > 0 for f in factors) or factors[0] > factors[1]:
            raise ValueError(f"time limits {text!r}: factors must be > 0 and A <= B")
        return cls(factors[0], factors[1], seed)

    @property
    def label(self) -> str:
        """``none``, ``x2`` or ``x1-10`` (``exact`` is ``x1``)."""
        if self.low is None or self.high is None:
            return "none"
        if self.low == self.high:
            return f"x{self.low:g}"
        return f"x{self.low:g}-{self.high:g}"

    def limit_s(self, job: TraceJob) -> int | None:
        """The job's limit in whole seconds (a whole number of minutes, at least one)."""
        if self.low is None or self.high is None:
            return None
        factor = self.low
        if self.high > self.low:
            draw = random.Random(f"{self.seed}:{job.job_id}").random()
            factor = math.exp(math.log(self.low) + draw * math.log(self.high / self.low))
        minutes = math.ceil(job.duration_s * factor / LIMIT_GRANULARITY_S - 1e-9)
        return max(1, minutes) * LIMIT_GRANULARITY_S
