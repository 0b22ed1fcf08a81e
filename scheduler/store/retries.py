"""Move a job on after its attempt ended, by the rules of ``scheduler.domain.retry``.

The store's part: gather the facts the pure ``next_step`` needs (the nodes the attempt
failed on, how the job's earlier attempts failed), then apply its answer with one
compare-and-set transition whose event carries the decision's sentence. A job keeps
its ``submitted_at`` through every requeue and retry, so it keeps its place in line.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.domain.retry import Ended, Failure, RetrySettings, next_step, signature
from scheduler.domain.spec import JobSpec
from scheduler.domain.status import JobStatus, PartState, TerminationReason
from scheduler.store.models import AttemptPartRow, AttemptRow, JobRow
from scheduler.store.transitions import transition_job

FAILURES = (TerminationReason.FAILED, TerminationReason.LAUNCH_FAILED)


def part_failed(part: AttemptPartRow) -> bool:
    """The part's own process failed: exited non-zero (or never launched), unsignalled."""
    return part.state is PartState.EXITED and not part.stopped_by_agent and part.exit_code != 0


def failed_on(attempt: AttemptRow) -> frozenset[str]:
    """The nodes where the attempt's own processes failed."""
    return frozenset(p.node.name for p in attempt.parts if part_failed(p))


def earlier_failures(session: Session, attempt: AttemptRow) -> list[Failure]:
    """How the job's attempts before ``attempt`` failed (failed / launch_failed only)."""
    stmt = (
        select(AttemptRow)
        .where(
            AttemptRow.job_id == attempt.job_id,
            AttemptRow.number < attempt.number,
            AttemptRow.reason.in_(FAILURES),
        )
        .order_by(AttemptRow.number)
    )
    return [
        Failure(signature(a.reason, a.exit_code), failed_on(a))
        for a in session.scalars(stmt)
        if a.reason is not None
    ]


def move_job(
    session: Session,
    job: JobRow,
    previous: JobStatus,
    attempt: AttemptRow,
    now: datetime,
    settings: RetrySettings,
    **also: object,
) -> bool:
    """Apply what follows the end of ``attempt`` (ended, with its reason and exit code),
    setting the job's fields ``also`` in the same statement; whether the job moved (it
    was still in ``previous``)."""
    assert attempt.reason is not None
    reason, exit_code = attempt.reason, attempt.exit_code
    ended = Ended(
        number=attempt.number,
        reason=reason,
        exit_code=exit_code,
        failed_on=failed_on(attempt),
        retries_used=job.retries_used,
        earlier_failures=earlier_failures(session, attempt) if reason in FAILURES else (),
    )
    step = next_step(JobSpec.model_validate(job.spec), ended, settings)
    fields: dict[str, object] = {"termination_reason": reason, "exit_code": exit_code, **also}
    if step.status is JobStatus.PENDING:
        fields["not_before"] = now + timedelta(seconds=step.delay_s) if step.delay_s else None
        if step.counts:
            fields["retries_used"] = job.retries_used + 1
    else:
        fields["ended_at"] = now
    return transition_job(
        session, job.id, previous, step.status, now=now, message=step.message, **fields
    )
