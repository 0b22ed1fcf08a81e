"""Time limits: an attempt running past its job's ``time_limit_s`` is stopped (timeout)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.domain.status import AttemptStatus, TerminationReason
from scheduler.loops.base import Loop
from scheduler.services.runtime import Runtime
from scheduler.store.attempts import Effects, request_stop
from scheduler.store.models import AttemptRow, utcnow


def _overdue(attempts: Iterable[AttemptRow], now: datetime) -> Iterator[tuple[AttemptRow, int]]:
    for attempt in attempts:
        limit_s = attempt.job.spec.get("time_limit_s")
        began = attempt.started_at or attempt.created_at
        if limit_s and now - began >= timedelta(seconds=int(limit_s)):
            yield attempt, int(limit_s)


def _running(session: Session) -> Iterable[AttemptRow]:
    stmt = select(AttemptRow).where(AttemptRow.status == AttemptStatus.RUNNING)
    return session.scalars(stmt).unique()


def stop_overdue(rt: Runtime) -> int:
    now = utcnow()
    effects = Effects()
    stopped = 0
    with rt.db.read() as session:
        if next(_overdue(_running(session), now), None) is None:
            return 0
    with rt.db.write() as session:
        for attempt, limit_s in list(_overdue(_running(session), now)):
            message = f"time limit of {limit_s}s reached"
            effects.merge(request_stop(session, attempt, TerminationReason.TIMEOUT, now, message))
            stopped += 1
    rt.notifier.notify(effects)
    return stopped


def limits_loop(rt: Runtime) -> Loop:
    return Loop(name="limits", interval_s=1.0, run_once=lambda: stop_overdue(rt))
