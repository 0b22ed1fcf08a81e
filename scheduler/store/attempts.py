"""Attempts: created from placements, advanced by agent reports, ended with a reason.

An attempt has one part per node. Its GPUs are released part by part, when that
part's process is reported gone (or its node is declared lost), so a GPU is never
handed to a new attempt while an old process may still run on it.

How an attempt ends, given its parts (all exited or lost):
- a stop was asked (``stop_reason``): that reason, except that parts that all exited 0
  on their own, unsignalled, mean the work finished: ``succeeded``;
- otherwise a lost part means ``node_lost``, all zero exit codes mean ``succeeded``.
A failing part of a multi-node attempt sets ``stop_reason=failed`` and stops the others.
The job then moves on by the retry rules (``store.retries``, ``domain.retry``): done,
requeued keeping its place, retried with backoff, failed, or cancelled. A part that
failed may also drain its node, when attempts of several jobs keep failing there
(``store.node_health``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, func, insert, literal, select, update
from sqlalchemy.orm import Session

from scheduler.domain.retry import RetrySettings
from scheduler.domain.status import (
    LIVE_ATTEMPT,
    AttemptStatus,
    JobStatus,
    PartState,
    TerminationReason,
)
from scheduler.store.jobs import get_job, latest_attempt
from scheduler.store.models import (
    AllocationRow,
    AttemptPartRow,
    AttemptRow,
    JobRow,
    NodeRow,
    UTCDateTime,
)
from scheduler.store.node_health import drain_if_bad
from scheduler.store.retries import move_job
from scheduler.store.transitions import record_event, transition_job, transition_jobs

PARTS = cast(Table, AttemptPartRow.__table__)
ATTEMPTS = cast(Table, AttemptRow.__table__)
JOBS = cast(Table, JobRow.__table__)
ALLOCATIONS = cast(Table, AllocationRow.__table__)
FINAL_PARTS = frozenset({PartState.EXITED, PartState.LOST})
R = TerminationReason


@dataclass
class Effects:
    """What a write changed that others must hear about once it has committed."""

    nodes: set[str] = field(default_factory=set)  # agents whose desired state changed
    schedule: bool = False  # GPUs were freed or jobs became pending: run a cycle

    def merge(self, other: Effects) -> None:
        self.nodes |= other.nodes
        self.schedule = self.schedule or other.schedule


# what a job's placement clears: its wait, its backoff, and the end of a previous attempt
# (which no longer describes the job)
_PLACED: dict[str, None] = {
    "wait_reason": None,
    "wait_message": None,
    "wait_position": None,
    "wait_estimated_start": None,
    "not_before": None,
    "termination_reason": None,
    "exit_code": None,
}


def create_attempt(
    session: Session,
    job: JobRow,
    nodes: list[NodeRow],
    gpus: dict[str, list[tuple[int, str]]],
    now: datetime,
) -> AttemptRow | None:
    """Place ``job`` (pending) on ``nodes`` with ``gpus[node] = [(index, uuid)]``.

    Returns None when the job is no longer pending (a lost race). A GPU that is
    already allocated makes the insert fail with an IntegrityError (the schema's
    one-live-allocation-per-GPU index); callers run this inside a savepoint.
    """
    number = job.attempts_count + 1
    names = _names(nodes)
    if not transition_job(
        session,
        job.id,
        JobStatus.PENDING,
        JobStatus.STARTING,
        now=now,
        message=f"attempt {number} placed on {names}",
        attempts_count=number,
        **_PLACED,
    ):
        return None
    total = sum(len(v) for v in gpus.values())
    attempt = AttemptRow(
        job_id=job.id, number=number, status=AttemptStatus.STARTING, created_at=now, gpu_count=total
    )
    session.add(attempt)
    session.flush()
    _insert_parts(session, [(attempt.id, NewAttempt(job.id, nodes, gpus))], now)
    return attempt


@dataclass(frozen=True)
class NewAttempt:
    """A placement, resolved: ``job_id`` on ``nodes`` (rank = position) with
    ``gpus[node name] = [(index, uuid)]``."""

    job_id: int
    nodes: list[NodeRow]
    gpus: dict[str, list[tuple[int, str]]]

    @property
    def gpu_count(self) -> int:
        return sum(len(held) for held in self.gpus.values())


def create_attempts(session: Session, new: list[NewAttempt], now: datetime) -> set[int]:
    """``create_attempt`` for many pending jobs in a few statements; the job ids placed.

    The jobs move pending -> starting in one compare-and-set (``transition_jobs``: one
    event each); a job no longer pending is left out. Their attempts, parts and
    allocations go in one insert per table. A GPU already allocated fails the whole
    allocations insert (IntegrityError): callers run this inside a savepoint and, on
    that error, place the jobs one at a time (``create_attempt``) to drop only the
    placement that lost."""
    wanted = {item.job_id: item for item in new}
    connection = session.connection()
    counts = connection.execute(
        select(JOBS.c.id, JOBS.c.attempts_count).where(
            JOBS.c.id.in_(list(wanted)), JOBS.c.status == JobStatus.PENDING
        )
    )
    numbers = {job_id: count + 1 for job_id, count in counts}
    moved = transition_jobs(
        session,
        list(numbers),
        JobStatus.PENDING,
        JobStatus.STARTING,
        now=now,
        message=lambda j: f"attempt {numbers[j]} placed on {_names(wanted[j].nodes)}",
        attempts_count=JOBS.c.attempts_count + 1,  # the leader's cycle alone changes it
        **_PLACED,
    )
    if not moved:
        return set()
    rows = [
        {
            "job_id": job_id,
            "number": numbers[job_id],
            "status": AttemptStatus.STARTING,
            "created_at": now,
            "gpu_count": wanted[job_id].gpu_count,
        }
        for job_id in sorted(moved)
    ]
    inserted = connection.execute(
        insert(ATTEMPTS).returning(ATTEMPTS.c.id, ATTEMPTS.c.job_id), rows
    )
    _insert_parts(session, [(attempt_id, wanted[job_id]) for attempt_id, job_id in inserted], now)
    return moved


def _names(nodes: list[NodeRow]) -> str:
    return ", ".join(n.name for n in nodes)


def _insert_parts(session: Session, attempts: list[tuple[int, NewAttempt]], now: datetime) -> None:
    """The attempts' parts and allocations: Core inserts, many rows per statement; a GPU
    already live fails the second one."""
    parts = [
        {"attempt_id": attempt_id, "node_id": n.id, "rank": rank, "state": PartState.PENDING}
        for attempt_id, item in attempts
        for rank, n in enumerate(item.nodes)
    ]
    allocations = [
        {
            "attempt_id": attempt_id,
            "node_id": n.id,
            "gpu_index": index,
            "gpu_uuid": uuid,
            "created_at": now,
        }
        for attempt_id, item in attempts
        for n in item.nodes
        for index, uuid in item.gpus.get(n.name, [])
    ]
    connection = session.connection()
    if parts:
        connection.execute(insert(PARTS), parts)
    if allocations:
        connection.execute(insert(ALLOCATIONS), allocations)


def release_part(session: Session, part: AttemptPartRow, now: datetime) -> None:
    """Release the part's live allocations (its attempt's GPUs on its node): a Core
    UPDATE, as no allocation row is held by the session."""
    stmt = update(ALLOCATIONS).where(
        ALLOCATIONS.c.attempt_id == part.attempt_id,
        ALLOCATIONS.c.node_id == part.node_id,
        ALLOCATIONS.c.released_at.is_(None),
    )
    session.connection().execute(stmt.values(released_at=now))


def mark_running(session: Session, attempt: AttemptRow, now: datetime) -> None:
    """The first part reported its process alive: the attempt and its job run.

    The job keeps the start of its first attempt (``started_at`` set only once, in SQL:
    no read of the job is needed)."""
    if attempt.status is not AttemptStatus.STARTING:
        return
    attempt.status = AttemptStatus.RUNNING
    attempt.started_at = now
    transition_job(
        session,
        attempt.job_id,
        JobStatus.STARTING,
        JobStatus.RUNNING,
        now=now,
        message=f"attempt {attempt.number} running",
        started_at=func.coalesce(JobRow.started_at, literal(now, UTCDateTime())),
    )


def cancel_job(session: Session, job: JobRow, now: datetime, why: str) -> Effects:
    """Cancel ``job`` (not ended): pending, it ends now; live, its attempt is asked to stop
    (the agent's report ends it). ``why`` goes into the event or the stop message."""
    if job.status is JobStatus.PENDING:
        transition_job(
            session,
            job.id,
            JobStatus.PENDING,
            JobStatus.CANCELLED,
            now=now,
            message=f"cancelled while pending ({why})",
            ended_at=now,
            termination_reason=TerminationReason.CANCELLED,
            wait_reason=None,
            wait_message=None,
        )
        return Effects()
    attempt = latest_attempt(session, job.id)
    if attempt is None or attempt.status not in LIVE_ATTEMPT:
        return Effects()
    return request_stop(session, attempt, TerminationReason.CANCELLED, now, why, override=True)


def request_stop(
    session: Session,
    attempt: AttemptRow,
    reason: TerminationReason,
    now: datetime,
    message: str,
    *,
    override: bool = False,
) -> Effects:
    """Ask the agents to stop ``attempt``; the job goes ``stopping``.

    A second stop keeps the first reason unless ``override`` (a cancel wins).
    """
    effects = Effects()
    if attempt.status is AttemptStatus.ENDED:
        return effects
    effects.nodes |= {p.node.name for p in attempt.parts if p.state not in FINAL_PARTS}
    if attempt.status is AttemptStatus.STOPPING:
        if override and attempt.stop_reason != reason:
            attempt.stop_reason = reason
            record_event(session, attempt.job_id, "stop", message, now)
        return effects
    previous = JobStatus(attempt.status.value)
    attempt.status = AttemptStatus.STOPPING
    attempt.stop_reason = reason
    transition_job(session, attempt.job_id, previous, JobStatus.STOPPING, now=now, message=message)
    return effects


def part_exited(
    session: Session,
    part: AttemptPartRow,
    *,
    exit_code: int | None,
    launch_failed: bool,
    stopped_by_agent: bool,
    message: str,
    now: datetime,
    retry: RetrySettings,
) -> Effects:
    """An agent reported the part's process gone: free its GPUs, maybe end the attempt.

    A process with an exit code ran, even when it ended before its agent reported it
    running (an agent reports a quick one's end first): it then started now at the
    latest, and its attempt and job run before they end."""
    if part.state is PartState.PENDING and exit_code is not None and not launch_failed:
        part.started_at = now
        mark_running(session, part.attempt, now)
    part.state = PartState.EXITED
    part.exit_code = exit_code
    part.stopped_by_agent = stopped_by_agent
    part.message = message[:2000]
    part.ended_at = now
    release_part(session, part, now)
    attempt = part.attempt
    effects = Effects(schedule=True)
    if attempt.stop_reason is None:
        if stopped_by_agent:  # the agent shut down and stopped it: not the job's fault
            attempt.stop_reason = R.PREEMPTED
        elif launch_failed:
            attempt.stop_reason = R.LAUNCH_FAILED
        elif exit_code != 0:
            attempt.stop_reason = R.FAILED
        if attempt.stop_reason is not None and attempt.message == "":
            attempt.message = message[:2000]
    others_live = any(p.state not in FINAL_PARTS for p in attempt.parts)
    if attempt.stop_reason is not None and others_live:
        effects.merge(request_stop(session, attempt, attempt.stop_reason, now, message))
    if drain_if_bad(session, part, now, retry):
        effects.nodes.add(part.node.name)
    effects.merge(finish_if_done(session, attempt, now, retry))
    return effects


def part_lost(
    session: Session, part: AttemptPartRow, now: datetime, retry: RetrySettings
) -> Effects:
    """The part's node was declared lost: free its GPUs and stop the rest of the gang."""
    part.state = PartState.LOST
    part.ended_at = now
    release_part(session, part, now)
    attempt = part.attempt
    effects = Effects(schedule=True)
    if attempt.stop_reason is None:
        attempt.stop_reason = R.NODE_LOST
        attempt.message = f"node {part.node.name} was lost"
    if any(p.state not in FINAL_PARTS for p in attempt.parts):
        effects.merge(request_stop(session, attempt, attempt.stop_reason, now, attempt.message))
    effects.merge(finish_if_done(session, attempt, now, retry))
    return effects


def _final_reason(attempt: AttemptRow) -> TerminationReason:
    parts = attempt.parts
    clean = all(
        p.state is PartState.EXITED and p.exit_code == 0 and not p.stopped_by_agent for p in parts
    )
    if clean:
        return R.SUCCEEDED
    if attempt.stop_reason is not None:
        return attempt.stop_reason
    if any(p.state is PartState.LOST for p in parts):
        return R.NODE_LOST
    return R.FAILED


def _exit_code(attempt: AttemptRow, reason: TerminationReason) -> int | None:
    """The first failing part's own code: a part the agent stopped only tells our signal."""
    failed = [p for p in attempt.parts if p.exit_code not in (None, 0)]
    own = [p for p in failed if not p.stopped_by_agent] or failed
    if own:
        return own[0].exit_code
    return 0 if reason is R.SUCCEEDED else None


def finish_if_done(
    session: Session, attempt: AttemptRow, now: datetime, retry: RetrySettings
) -> Effects:
    """End the attempt once every part is final, and move its job on."""
    if attempt.status is AttemptStatus.ENDED or any(
        p.state not in FINAL_PARTS for p in attempt.parts
    ):
        return Effects()
    reason = _final_reason(attempt)
    exit_code = _exit_code(attempt, reason)
    previous = JobStatus(attempt.status.value)
    attempt.status = AttemptStatus.ENDED
    attempt.reason = reason
    attempt.exit_code = exit_code
    attempt.ended_at = now  # its GPUs went back part by part, as each part became final
    with session.no_autoflush:  # the parts' and attempt's changes go in one flush later
        job = get_job(session, attempt.job_id, for_update=True)
    served = gpu_seconds(attempt, now)  # added in the job's own move, a statement less
    if not move_job(
        session, job, previous, attempt, now, retry, attained_gpu_s=JobRow.attained_gpu_s + served
    ):
        job.attained_gpu_s += served
    return Effects(schedule=True)


def gpu_seconds(attempt: AttemptRow, now: datetime) -> float:
    """GPU-seconds the attempt held: its GPUs times the time from start (or creation,
    if it never started) to its end (or ``now`` while it lives)."""
    began = attempt.started_at or attempt.created_at
    ended = attempt.ended_at or now
    return max(0.0, (ended - began).total_seconds()) * attempt.gpu_count


def work_at_risk_gpu_s(attempt: AttemptRow, now: datetime) -> float | None:
    """GPU-seconds a live attempt would lose if stopped now: since its last checkpoint,
    or since its start; None unless it has started and not ended."""
    if attempt.started_at is None or attempt.ended_at is not None:
        return None
    since = max(attempt.started_at, attempt.last_checkpoint_at or attempt.started_at)
    return max(0.0, (now - since).total_seconds()) * attempt.gpu_count


def live_parts_on_node(session: Session, node_id: int) -> list[AttemptPartRow]:
    stmt = select(AttemptPartRow).where(
        AttemptPartRow.node_id == node_id,
        AttemptPartRow.state.in_([PartState.PENDING, PartState.RUNNING]),
    )
    return list(session.scalars(stmt))


def overdue_attempts(session: Session, now: datetime) -> list[tuple[AttemptRow, int]]:
    """Running attempts past their job's time limit, with that limit in seconds.

    Runs every second: the running attempts are read as plain columns in one query
    (not as rows, each loading its job), and only the overdue ones are loaded."""
    stmt = (
        select(AttemptRow.id, AttemptRow.started_at, AttemptRow.created_at, JobRow.spec)
        .join(JobRow, JobRow.id == AttemptRow.job_id)
        .where(AttemptRow.status == AttemptStatus.RUNNING)
    )
    due: list[tuple[int, int]] = []
    for attempt_id, started_at, created_at, spec in session.execute(stmt):
        limit_s = spec.get("time_limit_s")
        if limit_s and now - (started_at or created_at) >= timedelta(seconds=int(limit_s)):
            due.append((attempt_id, int(limit_s)))
    return [(session.get_one(AttemptRow, attempt_id), limit_s) for attempt_id, limit_s in due]
