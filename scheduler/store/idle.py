"""Allocated-but-idle attempts: running attempts whose GPUs all stayed under a
utilisation threshold for a whole window.

``attempts.idle_since`` is set to when the idleness began (the attempt's start, or its
GPUs' last sample at or above the threshold) once the window is over, and cleared when
a GPU gets busy again. An attempt is judged only from samples: one whose GPUs sent no
sample in the window is not flagged (its agent may be silent, not its GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.domain.status import AttemptStatus
from scheduler.store.models import AllocationRow, AttemptRow, GpuRow, GpuSampleRow, JobRow


@dataclass(frozen=True)
class IdleAttempt:
    attempt: AttemptRow
    queue: str
    idle_action: str  # the queue's: "none" or "stop"
    idle_since: datetime


def mark_idle(
    session: Session, now: datetime, threshold_pct: float, window_s: float
) -> list[IdleAttempt]:
    """Set or clear ``idle_since`` on every running attempt; return those idle now."""
    window_start = now - timedelta(seconds=window_s)
    stmt = (
        select(AttemptRow)
        .join(JobRow, JobRow.id == AttemptRow.job_id)
        .where(AttemptRow.status == AttemptStatus.RUNNING)
        .order_by(AttemptRow.id)
    )
    idle = []
    for attempt in session.scalars(stmt).unique():
        since = _idle_since(session, attempt, threshold_pct, window_start)
        attempt.idle_since = since
        if since is not None:
            queue = attempt.job.queue
            idle.append(IdleAttempt(attempt, queue.name, queue.idle_action, since))
    return idle


def _idle_since(
    session: Session, attempt: AttemptRow, threshold_pct: float, window_start: datetime
) -> datetime | None:
    began = attempt.started_at
    if began is None or began > window_start:
        return None  # too young to judge
    gpu_ids = select(GpuRow.id).join(
        AllocationRow,
        (AllocationRow.gpu_uuid == GpuRow.uuid) & (AllocationRow.attempt_id == attempt.id),
    )
    recent = select(func.count()).where(
        GpuSampleRow.gpu_id.in_(gpu_ids), GpuSampleRow.at >= window_start
    )
    if not session.scalar(recent):
        return None
    busy = select(func.max(GpuSampleRow.at)).where(
        GpuSampleRow.gpu_id.in_(gpu_ids),
        GpuSampleRow.at >= began,
        GpuSampleRow.utilization_pct >= threshold_pct,
    )
    last_busy = session.scalar(busy)
    since = max(began, last_busy) if last_busy is not None else began
    return since if since <= window_start else None
