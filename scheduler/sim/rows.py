"""What every trace loader shares: the ``TraceJob`` it yields and how it reports bad rows.

A loader turns each row into an ``Outcome``: a ``TraceJob``, a ``Skip`` (a well-formed
row the simulator does not replay, e.g. a job that never ran) or a string (the reason
the row is malformed). ``collect`` gathers them: with ``strict`` any malformed row makes
a ``TraceError`` that lists the rows by number (the header, if any, is row 1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_LISTED_PROBLEMS = 5


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a trace, as the simulator replays it.

    ``gpus`` is the job's total GPU count; ``nodes`` is fixed when the trace says so
    (corral's export), else None and the simulator splits the GPUs over nodes of the
    simulated cluster (``cluster.shape_request``).
    """

    job_id: int
    queue: str
    submitted_at: float  # s since the epoch (dated traces) or since the trace's start
    duration_s: float  # runtime on its GPUs, uninterrupted
    gpus: int  # total GPUs, >= 1
    nodes: int | None = None
    gpu_type: str | None = None
    priority: int = 0


@dataclass(frozen=True)
class RowProblem:
    row: int  # row number in the file, the header being row 1
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.reason}"


class TraceError(ValueError):
    """A trace that cannot be read: the file, and each bad row with its number and reason."""

    def __init__(self, path: str, problems: Sequence[RowProblem]):
        self.path = path
        self.problems = tuple(problems)
        listed = "; ".join(str(p) for p in self.problems[:MAX_LISTED_PROBLEMS])
        more = len(self.problems) - MAX_LISTED_PROBLEMS
        suffix = f" (and {more} more bad rows)" if more > 0 else ""
        super().__init__(f"{path}: {listed}{suffix}")


class BadRow(ValueError):
    """Raised by a row parser with the reason; the loader adds the row number."""


@dataclass(frozen=True)
class Skip:
    """A well-formed row the simulator does not replay, and why."""

    reason: str


Outcome = TraceJob | Skip | str  # a job, a row left out on purpose, or a problem


def collect(
    path: str, rows: Iterable[tuple[int, Outcome]], strict: bool
) -> tuple[list[TraceJob], list[RowProblem]]:
    """Jobs and rows left out from (row, outcome) pairs; strict raises on any problem.

    A job id seen before is a problem too (it names the row that had it first).
    """
    jobs: list[TraceJob] = []
    problems: list[RowProblem] = []
    skipped: list[RowProblem] = []
    first_row: dict[int, int] = {}
    for row, parsed in rows:
        outcome = parsed
        if isinstance(parsed, TraceJob) and parsed.job_id in first_row:
            outcome = f"job id {parsed.job_id} already used at row {first_row[parsed.job_id]}"
        if isinstance(outcome, str):
            problems.append(RowProblem(row, outcome))
        elif isinstance(outcome, Skip):
            skipped.append(RowProblem(row, outcome.reason))
        else:
            first_row[outcome.job_id] = row
            jobs.append(outcome)
    if strict and problems:
        raise TraceError(path, problems)
    return jobs, sorted([*problems, *skipped], key=lambda p: p.row)


def text(record: dict[str, str], column: str) -> str:
    value = record[column].strip()
    if not value:
        raise BadRow(f"{column} is empty")
    return value


def number(record: dict[str, str], column: str, *, minimum: float | None = None) -> float:
    raw = record[column].strip()
    try:
        value = float(raw)
    except ValueError:
        raise BadRow(f"{column} {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRow(f"{column} {raw!r} is not finite")
    if minimum is not None and value < minimum:
        raise BadRow(f"{column} {raw!r} is below {minimum:g}")
    return value


def integer(record: dict[str, str], column: str, *, minimum: int | None = None) -> int:
    value = number(record, column)
    if value != int(value):
        raise BadRow(f"{column} {record[column].strip()!r} is not a whole number")
    if minimum is not None and value < minimum:
        raise BadRow(f"{column} {record[column].strip()!r} is below {minimum}")
    return int(value)


def parse_time(value: str) -> float:
    """Seconds (``"86400"``) or an ISO date/time read as UTC (``"2017-10-09"``) -> seconds.

    ``parse_time("2017-10-09")`` is 1507507200.0; ``parse_time("90")`` is 90.0.
    """
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not a time: {value!r} (use seconds or e.g. 2017-10-09T00:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
