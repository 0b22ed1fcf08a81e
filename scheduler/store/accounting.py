"""Accounting: who used how many GPU-hours in a window ``[since, until)``.

Everything is measured from allocation rows, one per GPU an attempt held, over
``[created_at, released_at)`` (``until`` while still held), clipped to the window:

- **allocated**: the clipped GPU-time.
- **used**: the allocated GPU-time weighted by the mean utilisation of that GPU's
  samples inside the clipped interval (an interval without samples counts 0).
  Example: a GPU held 2 h of the window whose samples there average 50 % used 1 h.
- **lost to preemption**: for attempts that ended ``preempted`` or ``node_lost``, the
  clipped GPU-time after their last checkpoint (all of it without one): work redone.

Jobs are counted by key: ``jobs_run`` those that held a GPU in the window,
``jobs_failed`` those that ended failed in it, ``jobs_preempted`` those with an attempt
that ended preempted in it. A key is the queue's name or the submitting token's name
(``-`` for jobs submitted before it was recorded).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from scheduler.domain.status import JobStatus, TerminationReason
from scheduler.domain.views import UsageEntry
from scheduler.store.models import AllocationRow, AttemptRow, GpuRow, JobRow, QueueRow
from scheduler.store.telemetry import Retention, mean_utilization

GroupBy = Literal["queue", "user"]
UNKNOWN_USER = "-"
HOUR_S = 3600.0
LOST_REASONS = (TerminationReason.PREEMPTED, TerminationReason.NODE_LOST)


@dataclass
class _Tally:
    allocated_s: float = 0.0
    used_s: float = 0.0
    lost_s: float = 0.0
    jobs_run: set[int] = field(default_factory=set)
    jobs_failed: set[int] = field(default_factory=set)
    jobs_preempted: set[int] = field(default_factory=set)

    def entry(self, key: str) -> UsageEntry:
        return UsageEntry(
            key=key,
            gpu_hours_allocated=self.allocated_s / HOUR_S,
            gpu_hours_used=self.used_s / HOUR_S,
            gpu_hours_lost_to_preemption=self.lost_s / HOUR_S,
            jobs_run=len(self.jobs_run),
            jobs_failed=len(self.jobs_failed),
            jobs_preempted=len(self.jobs_preempted),
        )


def _key_column(by: GroupBy) -> InstrumentedAttribute[str] | InstrumentedAttribute[str | None]:
    return QueueRow.name if by == "queue" else JobRow.submitted_by


def _overlap_s(start: datetime, end: datetime, since: datetime, until: datetime) -> float:
    return max(0.0, (min(end, until) - max(start, since)).total_seconds())


def usage_report(
    session: Session,
    by: GroupBy,
    since: datetime,
    until: datetime,
    retention: Retention | None = None,
) -> list[UsageEntry]:
    """One entry per queue (or user) with any activity in the window, sorted by key.

    Used GPU-time reads the telemetry level that still covers each allocation (raw
    samples, then minute and hour rollups), so it holds over windows longer than the
    raw samples are kept.
    """
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    _count_allocations(session, by, (since, until), retention or Retention(), tallies)
    _count_endings(session, by, since, until, tallies)
    return [tallies[key].entry(key) for key in sorted(tallies)]


def _count_allocations(
    session: Session,
    by: GroupBy,
    window: tuple[datetime, datetime],
    retention: Retention,
    tallies: dict[str, _Tally],
) -> None:
    since, until = window
    stmt = (
        select(AllocationRow, AttemptRow, _key_column(by))
        .join(AttemptRow, AttemptRow.id == AllocationRow.attempt_id)
        .join(JobRow, JobRow.id == AttemptRow.job_id)
        .join(QueueRow, QueueRow.id == JobRow.queue_id)
        .where(
            AllocationRow.created_at < until,
            or_(AllocationRow.released_at.is_(None), AllocationRow.released_at > since),
        )
    )
    gpu_ids = _gpu_ids(session)
    for alloc, attempt, key in session.execute(stmt).unique().all():
        end = alloc.released_at or until
        held_s = _overlap_s(alloc.created_at, end, since, until)
        if held_s <= 0:
            continue
        tally = tallies[key or UNKNOWN_USER]
        tally.allocated_s += held_s
        tally.jobs_run.add(attempt.job_id)
        start, stop = max(alloc.created_at, since), min(end, until)
        gpu_id = gpu_ids.get(alloc.gpu_uuid)
        mean_pct = (
            0.0
            if gpu_id is None or stop <= start
            else mean_utilization(session, gpu_id, start, stop, now=until, retention=retention)
            or 0.0
        )
        tally.used_s += held_s * mean_pct / 100.0
        if attempt.reason in LOST_REASONS:
            redone_from = max(alloc.created_at, attempt.last_checkpoint_at or alloc.created_at)
            tally.lost_s += _overlap_s(redone_from, end, since, until)


def _gpu_ids(session: Session) -> dict[str, int]:
    return {uuid: gpu_id for gpu_id, uuid in session.execute(select(GpuRow.id, GpuRow.uuid))}


def _count_endings(
    session: Session, by: GroupBy, since: datetime, until: datetime, tallies: dict[str, _Tally]
) -> None:
    key = _key_column(by)
    failed = (
        select(JobRow.id, key)
        .join(QueueRow, QueueRow.id == JobRow.queue_id)
        .where(JobRow.status == JobStatus.FAILED, JobRow.ended_at >= since, JobRow.ended_at < until)
    )
    for job_id, name in session.execute(failed).all():
        tallies[name or UNKNOWN_USER].jobs_failed.add(job_id)
    preempted = (
        select(AttemptRow.job_id, key)
        .join(JobRow, JobRow.id == AttemptRow.job_id)
        .join(QueueRow, QueueRow.id == JobRow.queue_id)
        .where(
            AttemptRow.reason == TerminationReason.PREEMPTED,
            AttemptRow.ended_at >= since,
            AttemptRow.ended_at < until,
        )
    )
    for job_id, name in session.execute(preempted).all():
        tallies[name or UNKNOWN_USER].jobs_preempted.add(job_id)
