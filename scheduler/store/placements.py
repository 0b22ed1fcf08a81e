"""Apply a policy's decisions in one write transaction: placements become attempts and
allocations, preemptions become stop requests, waits get their reason and place in line.

Each placement runs in its own savepoint: a job that changed meanwhile (cancelled) or
a GPU that is no longer free (the schema's one-live-allocation index refuses it) only
drops that placement, never the cycle. A preemption of an attempt that ended or was
already asked to stop since the snapshot is dropped the same way. The nodes to wake
come back as ``Effects``: the caller notifies them after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.domain.decisions import Decisions, Placement, Preemption, Wait
from scheduler.domain.status import AttemptStatus, JobStatus, TerminationReason
from scheduler.store.attempts import Effects, create_attempt, request_stop
from scheduler.store.models import AttemptRow, JobRow, NodeRow

log = logging.getLogger("corral.store.placements")

PREEMPTIBLE_NOW = (AttemptStatus.STARTING, AttemptStatus.RUNNING)


@dataclass
class Applied:
    """What a cycle's decisions changed: the agents to wake and the figures."""

    effects: Effects = field(default_factory=Effects)
    placed: int = 0
    preempted: int = 0


def apply_decisions(session: Session, decisions: Decisions, now: datetime) -> Applied:
    applied = Applied()
    nodes = {n.name: n for n in session.scalars(select(NodeRow)).unique()}
    for placement in decisions.placements:
        if _place(session, placement, nodes, now):
            applied.effects.nodes |= set(placement.nodes)
            applied.placed += 1
    for preemption in decisions.preemptions:
        effects = _preempt(session, preemption, now)
        if effects is not None:
            applied.effects.merge(effects)
            applied.preempted += 1
    _record_waits(session, decisions)
    return applied


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


def _preempt(session: Session, preemption: Preemption, now: datetime) -> Effects | None:
    """Ask the agents to stop the attempt (reason ``preempted``); None if it is too late."""
    attempt = session.get(AttemptRow, preemption.attempt_id, with_for_update={"of": AttemptRow})
    if (
        attempt is None
        or attempt.job_id != preemption.job_id
        or attempt.status not in PREEMPTIBLE_NOW
    ):
        return None
    message = f"attempt {attempt.number} preempted: {preemption.message or 'by the policy'}"
    # its job goes stopping; that transition's event records the preemption and why
    return request_stop(session, attempt, TerminationReason.PREEMPTED, now, message)


def _record_waits(session: Session, decisions: Decisions) -> None:
    """Write each waiting job's reason, place and estimate, only where they changed.

    Most waits repeat the last cycle's: comparing with what is stored (one read of four
    columns) leaves a long queue's rows untouched, and the changed ones go in one
    executemany."""
    if not decisions.waits:
        return
    jobs = cast(Table, JobRow.__table__)
    columns = [jobs.c[key] for key in WAIT_FIELDS]
    stored = {
        row[0]: tuple(row[1:])
        for row in session.connection().execute(
            select(jobs.c.id, *columns).where(
                jobs.c.id.in_([w.job_id for w in decisions.waits]),
                jobs.c.status == JobStatus.PENDING,
            )
        )
    }
    changed = []
    for wait in decisions.waits:
        fields = _wait_fields(wait)
        now_stored = stored.get(wait.job_id)
        if now_stored is not None and now_stored != tuple(fields.values()):
            changed.append({"job_id": wait.job_id, **{f"new_{k}": v for k, v in fields.items()}})
    if changed:
        stmt = (
            update(jobs)
            .where(jobs.c.id == bindparam("job_id"), jobs.c.status == JobStatus.PENDING)
            .values({key: bindparam(f"new_{key}") for key in WAIT_FIELDS})
        )
        session.connection().execute(stmt, changed)


WAIT_FIELDS = ("wait_reason", "wait_message", "wait_position", "wait_estimated_start")


def _wait_fields(wait: Wait) -> dict[str, object]:
    estimated = wait.estimated_start
    return {
        "wait_reason": wait.reason.value,
        "wait_message": wait.message[:500],
        "wait_position": wait.position,
        "wait_estimated_start": None
        if estimated is None
        else datetime.fromtimestamp(estimated, UTC),
    }
