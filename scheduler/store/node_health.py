"""Bad nodes: drain a node where the attempts of different jobs keep failing.

The count is the node's failure streak: its attempt parts that ended, newest first,
that failed on their own (``retries.part_failed``: non-zero exit or launch failure,
not a stop we asked for), up to the newest success (exit 0). Stopped, preempted and
lost parts say nothing about the node and are skipped. Only parts that ended since the
node was last drained or undrained count, so an operator's undrain starts afresh.

When the streak reaches ``drain_after_failures`` parts of at least
``drain_after_jobs`` different jobs, the node is drained with a reason that says so,
e.g. ``drained: 3 attempts of 2 jobs failed here in a row (last: job 17 exit 127)``;
one job failing alone proves nothing about the node (retry rules handle it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.domain.retry import RetrySettings
from scheduler.domain.status import PartState
from scheduler.store.models import AttemptPartRow, AttemptRow, NodeRow
from scheduler.store.nodes import NODE_LOST
from scheduler.store.retries import part_failed
from scheduler.store.transitions import record_event

log = logging.getLogger("corral.store.node_health")

SCAN_LIMIT = 500  # parts looked at per check: far more than any streak worth draining for


@dataclass(frozen=True)
class Streak:
    """The node's failures in a row: (job id, exit code or None for a launch failure)."""

    failures: tuple[tuple[int, int | None], ...]

    @property
    def jobs(self) -> int:
        return len({job_id for job_id, _ in self.failures})

    def reason(self) -> str:
        job_id, code = self.failures[0]
        last = f"job {job_id} " + ("launch failed" if code is None else f"exit {code}")
        return (
            f"drained: {len(self.failures)} attempts of {self.jobs} jobs failed here in a row "
            f"(last: {last})"
        )


def failure_streak(session: Session, node: NodeRow) -> Streak:
    stmt = (
        select(AttemptPartRow, AttemptRow.job_id)
        .join(AttemptRow, AttemptRow.id == AttemptPartRow.attempt_id)
        .where(
            AttemptPartRow.node_id == node.id,
            AttemptPartRow.state == PartState.EXITED,
            AttemptPartRow.stopped_by_agent.is_(False),
            AttemptPartRow.ended_at.is_not(None),
        )
        .order_by(AttemptPartRow.ended_at.desc(), AttemptPartRow.id.desc())
        .limit(SCAN_LIMIT)
    )
    if node.drain_changed_at is not None:
        stmt = stmt.where(AttemptPartRow.ended_at >= node.drain_changed_at)
    failures: list[tuple[int, int | None]] = []
    for part, job_id in session.execute(stmt).unique():
        if not part_failed(part):
            break  # a success ends the streak
        failures.append((job_id, part.exit_code))
    return Streak(tuple(failures))


def drain_if_bad(
    session: Session, part: AttemptPartRow, now: datetime, settings: RetrySettings
) -> bool:
    """After ``part`` ended: drain its node if it is now a bad node; True if it was."""
    node = part.node
    if settings.drain_after_failures <= 0 or not part_failed(part):
        return False
    if node.drained or node.state == NODE_LOST:
        return False
    streak = failure_streak(session, node)
    if len(streak.failures) < settings.drain_after_failures:
        return False
    if streak.jobs < settings.drain_after_jobs:
        return False
    node.drained = True
    node.drain_reason = streak.reason()[:500]
    node.drain_changed_at = now
    log.warning("node %s %s", node.name, node.drain_reason)
    job_id = part.attempt.job_id
    record_event(session, job_id, "node_drained", f"node {node.name} {node.drain_reason}", now)
    return True
