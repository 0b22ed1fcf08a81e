"""Apply a policy's decisions: placements become attempts and allocations; waits get reasons.

Each placement runs in its own savepoint: a job that changed meanwhile (cancelled) or
a GPU that is no longer free (the schema's one-live-allocation index refuses it) only
drops that placement, never the cycle.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.domain.decisions import Decisions, Placement
from scheduler.domain.status import JobStatus
from scheduler.store.attempts import Effects, create_attempt
from scheduler.store.models import JobRow, NodeRow

log = logging.getLogger("corral.store.placements")


def apply_decisions(session: Session, decisions: Decisions, now: datetime) -> tuple[Effects, int]:
    """Returns what to wake and how many placements took effect."""
    effects = Effects()
    placed = 0
    nodes = {n.name: n for n in session.scalars(select(NodeRow)).unique()}
    for placement in decisions.placements:
        if _place(session, placement, nodes, now):
            effects.nodes |= set(placement.nodes)
            placed += 1
    _record_waits(session, decisions)
    return effects, placed


def _place(
    session: Session, placement: Placement, nodes: dict[str, NodeRow], now: datetime
) -> bool:
    job = session.get(JobRow, placement.job_id, with_for_update={"of": JobRow})
    if job is None or job.status is not JobStatus.PENDING:
        return False
    chosen = [nodes[name] for name in placement.nodes]
    gpus: dict[str, list[tuple[int, str]]] = {}
    for ref in placement.gpus:
        uuid = next(g.uuid for g in nodes[ref.node].gpus if g.index == ref.index)
        gpus.setdefault(ref.node, []).append((ref.index, uuid))
    try:
        with session.begin_nested():
            attempt = create_attempt(session, job, chosen, gpus, now)
    except IntegrityError:
        log.warning("placement of job %s lost a race for its GPUs; retried next cycle", job.id)
        session.expire(job)
        return False
    return attempt is not None


def _record_waits(session: Session, decisions: Decisions) -> None:
    if not decisions.waits:
        return
    ids = [w.job_id for w in decisions.waits]
    jobs = {j.id: j for j in session.scalars(select(JobRow).where(JobRow.id.in_(ids))).unique()}
    for wait in decisions.waits:
        job = jobs.get(wait.job_id)
        if job is None or job.status is not JobStatus.PENDING:
            continue
        if job.wait_reason != wait.reason.value or job.wait_message != wait.message:
            job.wait_reason = wait.reason.value
            job.wait_message = wait.message[:500]
