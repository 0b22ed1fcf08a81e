"""Job history for export: jobs that ended, in id order, with their GPU-holding time.

What ``corral jobs --export`` writes and ``corral simulate --trace FILE`` replays
(``scheduler.sim.history`` reads it). ``run_s`` sums the attempts' start-to-end times,
so a job preempted and resumed replays as the work it really did, not as the span from
its first start to its end.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.domain.status import TERMINAL
from scheduler.store.models import AttemptRow, JobRow, QueueRow


@dataclass(frozen=True)
class ExportedJob:
    id: int
    queue: str
    status: str
    priority: int
    submitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    gpus: int  # per node, as in its spec
    nodes: int
    gpu_type: str | None
    run_s: float | None  # None when it never ran


def ended_jobs(
    session: Session,
    *,
    after_id: int = 0,
    limit: int = 1000,
    since: datetime | None = None,
    queue: str | None = None,
) -> list[ExportedJob]:
    """Up to ``limit`` jobs that ended (at or after ``since``), ids above ``after_id``."""
    stmt = (
        select(JobRow.id, QueueRow.name, JobRow.status, JobRow.priority, JobRow.spec)
        .add_columns(JobRow.submitted_at, JobRow.started_at, JobRow.ended_at)
        .join(QueueRow, QueueRow.id == JobRow.queue_id)
        .where(JobRow.id > after_id, JobRow.status.in_(TERMINAL))
        .order_by(JobRow.id)
        .limit(limit)
    )
    if since is not None:
        stmt = stmt.where(JobRow.ended_at >= since)
    if queue is not None:
        stmt = stmt.where(QueueRow.name == queue)
    rows = session.execute(stmt).all()
    held = _held_seconds(session, [row[0] for row in rows])
    found = []
    for job_id, queue_name, status, priority, spec, submitted, started, ended in rows:
        resources = (spec or {}).get("resources") or {}
        found.append(
            ExportedJob(
                id=job_id,
                queue=queue_name,
                status=status.value,
                priority=priority,
                submitted_at=submitted,
                started_at=started,
                ended_at=ended,
                gpus=int(resources.get("gpus", 1)),
                nodes=int(resources.get("nodes", 1)),
                gpu_type=resources.get("gpu_type"),
                run_s=None if started is None else round(held.get(job_id, 0.0), 3),
            )
        )
    return found


def _held_seconds(session: Session, job_ids: list[int]) -> dict[int, float]:
    """Seconds each job's attempts ran (start to end), summed per job."""
    if not job_ids:
        return {}
    stmt = select(AttemptRow.job_id, AttemptRow.started_at, AttemptRow.ended_at).where(
        AttemptRow.job_id.in_(job_ids), AttemptRow.started_at.is_not(None)
    )
    total: dict[int, float] = defaultdict(float)
    for job_id, started, ended in session.execute(stmt):
        if started is not None and ended is not None:
            total[job_id] += max(0.0, (ended - started).total_seconds())
    return dict(total)
