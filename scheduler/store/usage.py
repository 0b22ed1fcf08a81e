"""Decayed usage of the queues: the usage loop's one write (``domain.usage`` has the math).

Each queue's ``usage_gpu_s`` is valid as of its ``usage_updated_at``; ``accrue_usage``
carries both forward to ``now``: the old usage decays, and the GPU-seconds its jobs'
allocations held since then (from their created/released times, so a job that
started and ended between two passes counts too) are added. An org accrues its
children's GPUs as well, so its usage is the sum of theirs. The queue rows are locked
for the pass, so two servers running it cannot count a window twice.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from scheduler.domain.usage import decayed_usage, held_gpu_seconds
from scheduler.store.models import AllocationRow, AttemptRow, JobRow, QueueRow

Interval = tuple[float, float | None]  # one GPU held from, to (None: still held)


def accrue_usage(session: Session, now: datetime, half_life_s: float) -> int:
    """Advance every queue's usage to ``now``; returns how many queues moved."""
    queues = list(session.scalars(select(QueueRow).order_by(QueueRow.id).with_for_update()))
    starts = [q.usage_updated_at for q in queues if q.usage_updated_at is not None]
    held = _intervals_by_queue(session, min(starts, default=now), now)
    for queue in queues:
        if queue.parent_id is not None:
            held[queue.parent_id] += held[queue.id]
    moved = 0
    for queue in queues:
        start = queue.usage_updated_at
        if start is not None and now <= start:
            continue  # already counted up to now (another pass, or a clock that went back)
        if start is not None:
            elapsed_s = (now - start).total_seconds()
            gpu_s = held_gpu_seconds(held[queue.id], start.timestamp(), now.timestamp())
            queue.usage_gpu_s = decayed_usage(queue.usage_gpu_s, elapsed_s, half_life_s, gpu_s)
        queue.usage_updated_at = now  # a queue never counted starts counting now
        moved += 1
    return moved


def _intervals_by_queue(
    session: Session, since: datetime, now: datetime
) -> defaultdict[int, list[Interval]]:
    """queue id -> the allocations of its jobs that overlap ``[since, now]``."""
    stmt = (
        select(JobRow.queue_id, AllocationRow.created_at, AllocationRow.released_at)
        .select_from(AllocationRow)
        .join(AttemptRow, AttemptRow.id == AllocationRow.attempt_id)
        .join(JobRow, JobRow.id == AttemptRow.job_id)
        .where(
            AllocationRow.created_at < now,
            or_(AllocationRow.released_at.is_(None), AllocationRow.released_at > since),
        )
    )
    found: defaultdict[int, list[Interval]] = defaultdict(list)
    for queue_id, created, released in session.execute(stmt).all():
        found[queue_id].append((created.timestamp(), released.timestamp() if released else None))
    return found
