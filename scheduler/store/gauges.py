"""What ``GET /metrics`` reads at scrape time: the cluster's state now, as plain figures.

Each function is one query in the caller's read transaction and returns frozen data,
so the exporter (``api/metrics.py``) never touches rows. Counts come from the rows
themselves, not from counters kept in a process: every server reports the same
figures, and a restart does not reset them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from scheduler.domain.status import JobStatus, TerminationReason
from scheduler.store.models import (
    AllocationRow,
    AttemptRow,
    GpuRow,
    JobRow,
    NodeRow,
    QueueRow,
)
from scheduler.store.snapshot import node_state

NO_REASON = "none"  # a pending job the scheduler has not looked at yet


@dataclass(frozen=True)
class GpuReading:
    """The latest reading of one present GPU and who holds it ("" when free)."""

    node: str
    hostname: str
    index: int
    uuid: str
    model_name: str
    memory_total_mib: int
    utilization_pct: float | None
    memory_used_mib: int | None
    temperature_c: float | None
    power_w: float | None
    job: str
    queue: str


def gpu_readings(session: Session) -> list[GpuReading]:
    holders = _gpu_holders(session)
    stmt = (
        select(GpuRow, NodeRow.name, NodeRow.hostname)
        .join(NodeRow, NodeRow.id == GpuRow.node_id)
        .where(GpuRow.present.is_(True))
        .order_by(NodeRow.name, GpuRow.index)
    )
    out = []
    for gpu, node, hostname in session.execute(stmt).all():
        job, queue = holders.get((gpu.node_id, gpu.index), ("", ""))
        out.append(
            GpuReading(
                node=node,
                hostname=hostname,
                index=gpu.index,
                uuid=gpu.uuid,
                model_name=gpu.name,
                memory_total_mib=gpu.memory_total_mib,
                utilization_pct=gpu.utilization_pct,
                memory_used_mib=gpu.memory_used_mib,
                temperature_c=gpu.temperature_c,
                power_w=gpu.power_w,
                job=job,
                queue=queue,
            )
        )
    return out


def _gpu_holders(session: Session) -> dict[tuple[int, int], tuple[str, str]]:
    """(node_id, gpu_index) -> (job id, queue name) of each live allocation."""
    stmt = (
        select(AllocationRow.node_id, AllocationRow.gpu_index, JobRow.id, QueueRow.name)
        .join(AttemptRow, AttemptRow.id == AllocationRow.attempt_id)
        .join(JobRow, JobRow.id == AttemptRow.job_id)
        .join(QueueRow, QueueRow.id == JobRow.queue_id)
        .where(AllocationRow.released_at.is_(None))
    )
    return {(n, i): (str(j), q) for n, i, j, q in session.execute(stmt).all()}


def jobs_by_state_and_queue(session: Session) -> dict[tuple[str, ...], int]:
    """(status, queue name) -> number of jobs, for every pair that has any."""
    stmt = (
        select(JobRow.status, QueueRow.name, func.count())
        .join(QueueRow, QueueRow.id == JobRow.queue_id)
        .group_by(JobRow.status, QueueRow.name)
    )
    return {(s.value, q): int(n) for s, q, n in session.execute(stmt).all()}


def pending_by_reason(session: Session) -> dict[str, int]:
    """wait reason -> pending jobs (``none``: not yet looked at by a cycle)."""
    stmt = (
        select(JobRow.wait_reason, func.count())
        .where(JobRow.status == JobStatus.PENDING)
        .group_by(JobRow.wait_reason)
    )
    out: Counter[str] = Counter()
    for reason, n in session.execute(stmt).all():
        out[reason or NO_REASON] += int(n)
    return dict(out)


def preemptions(session: Session) -> int:
    """Attempts ever asked to stop so that others could run."""
    stmt = select(func.count()).where(AttemptRow.stop_reason == TerminationReason.PREEMPTED)
    return int(session.scalar(stmt) or 0)


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts at each bound (``counts[i]``: values <= ``bounds[i]``), with
    the count and sum of all values."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    total: float


def first_start_waits(session: Session, bounds: tuple[float, ...]) -> Histogram:
    """Seconds from submission to the start of the first attempt, per job that started,
    counted by the database: one row comes back however many jobs ever ran."""
    started, submitted = AttemptRow.started_at, JobRow.submitted_at
    if session.get_bind().dialect.name == "sqlite":  # timestamps are text there
        seconds = (func.julianday(started) - func.julianday(submitted)) * 86_400.0
    else:
        seconds = func.extract("epoch", started - submitted)
    wait = case((seconds < 0, 0.0), else_=seconds)
    stmt = (
        select(
            func.count(),
            func.coalesce(func.sum(wait), 0.0),
            *(func.coalesce(func.sum(case((wait <= bound, 1), else_=0)), 0) for bound in bounds),
        )
        .select_from(JobRow)
        .join(AttemptRow, AttemptRow.job_id == JobRow.id)
        .where(AttemptRow.number == 1, started.is_not(None))
    )
    count, total, *counts = session.execute(stmt).one()
    return Histogram(bounds, tuple(int(c) for c in counts), int(count), float(total))


def nodes_by_state(session: Session) -> dict[str, int]:
    """up / drained / lost -> number of nodes."""
    counts: Counter[str] = Counter(
        node_state(n).value for n in session.scalars(select(NodeRow)).unique()
    )
    return dict(counts)
