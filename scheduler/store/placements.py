"""Apply a policy's decisions in one write transaction: placements become attempts and
allocations, preemptions become stop requests, waits get their reason and place in line.

The placements go in together, a few statements for all (``create_attempts``), in one
savepoint: a job that changed meanwhile (cancelled) is left out by its compare-and-set.
A GPU that is no longer free (the schema's one-live-allocation index refuses it) fails
the savepoint; then each placement runs in a savepoint of its own, so that only the one
that lost is dropped, never the cycle. A preemption of an attempt that ended or was
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
from sqlalchemy.orm import Session, selectinload

from scheduler.domain.decisions import Decisions, Placement, Preemption, Wait
from scheduler.domain.status import AttemptStatus, JobStatus, TerminationReason
from scheduler.store.attempts import (
    Effects,
    NewAttempt,
    create_attempt,
    create_attempts,
    request_stop,
)
from scheduler.store.models import AttemptRow, JobRow, NodeRow

log = logging.getLogger("corral.store.placements")

PREEMPTIBLE_NOW = (AttemptStatus.STARTING, AttemptStatus.RUNNING)


@dataclass
class Applied:
    """What a cycle's decisions changed: the agents to wake and the figures."""

    effects: Effects = field(default_factory=Effects)
    placed: int = 0
    preempted: int = 0


def apply_decisions(
    session: Session, decisions: Decisions, now: datetime, *, positions: bool = True
) -> Applied:
    """Placements, preemptions and waits in ``session``'s transaction. ``positions``:
    False leaves a waiting job's stored place in line as it is when nothing else of its
    wait changed (a draining queue moves every job up one place each cycle)."""
    applied = Applied()
    for placement in _place_all(session, decisions.placements, now):
        applied.effects.nodes |= set(placement.nodes)
        applied.placed += 1
    for preemption in decisions.preemptions:
        effects = _preempt(session, preemption, now)
        if effects is not None:
            applied.effects.merge(effects)
            applied.preempted += 1
    _record_waits(session, decisions, positions)
    return applied


def _place_all(
    session: Session, placements: tuple[Placement, ...], now: datetime
) -> list[Placement]:
    """The placements that became attempts: all in one go, else one at a time."""
    if not placements:
        return []
    names = {name for placement in placements for name in placement.nodes}
    with_gpus = (  # the placements' nodes only, with their GPUs: not one query per node
        select(NodeRow).where(NodeRow.name.in_(names)).options(selectinload(NodeRow.gpus))
    )
    nodes = {n.name: n for n in session.scalars(with_gpus)}
    new = [_resolve(placement, nodes) for placement in placements]
    try:
        with session.begin_nested():
            placed = create_attempts(session, new, now)
    except IntegrityError:
        log.info("a placement lost a race for its GPUs; placing one job at a time")
        return [p for p, item in zip(placements, new, strict=True) if _place(session, item, now)]
    return [p for p in placements if p.job_id in placed]


def _resolve(placement: Placement, nodes: dict[str, NodeRow]) -> NewAttempt:
    """The placement with its node rows and each GPU's uuid."""
    uuids = {(name, g.index): g.uuid for name in placement.nodes for g in nodes[name].gpus}
    gpus: dict[str, list[tuple[int, str]]] = {}
    for ref in placement.gpus:
        gpus.setdefault(ref.node, []).append((ref.index, uuids[ref.node, ref.index]))
    return NewAttempt(placement.job_id, [nodes[name] for name in placement.nodes], gpus)


def _place(session: Session, item: NewAttempt, now: datetime) -> bool:
    job = session.get(JobRow, item.job_id, with_for_update={"of": JobRow})
    if job is None or job.status is not JobStatus.PENDING:
        return False
    try:
        with session.begin_nested():
            attempt = create_attempt(session, job, item.nodes, item.gpus, now)
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


def _record_waits(session: Session, decisions: Decisions, positions: bool) -> None:
    """Write each waiting job's reason, place and estimate, only where they changed
    (where only the place changed, only if ``positions``).

    Most waits repeat the last cycle's: comparing with what is stored (one read of the
    pending jobs' four columns) leaves a long queue's rows untouched, and the changed
    ones go in one executemany."""
    if not decisions.waits:
        return
    jobs = cast(Table, JobRow.__table__)
    columns = [jobs.c[key] for key in WAIT_FIELDS]
    # every pending job the snapshot saw has a wait: read them all, not by a long IN list
    read = select(jobs.c.id, *columns).where(jobs.c.status == JobStatus.PENDING)
    stored = {row[0]: tuple(row[1:]) for row in session.connection().execute(read)}
    place = WAIT_FIELDS.index("wait_position")
    changed = []
    for wait in decisions.waits:
        fields = _wait_fields(wait)
        now_stored = stored.get(wait.job_id)
        if now_stored is None:
            continue  # placed or cancelled since the snapshot
        new = tuple(fields.values())
        if now_stored != new and (positions or _without(now_stored, place) != _without(new, place)):
            changed.append({"job_id": wait.job_id, **{f"new_{k}": v for k, v in fields.items()}})
    if changed:
        stmt = (
            update(jobs)
            .where(jobs.c.id == bindparam("job_id"), jobs.c.status == JobStatus.PENDING)
            .values({key: bindparam(f"new_{key}") for key in WAIT_FIELDS})
        )
        session.connection().execute(stmt, changed)


def _without(values: tuple[object, ...], index: int) -> tuple[object, ...]:
    return values[:index] + values[index + 1 :]


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
