"""Time limits: an attempt running past its job's ``time_limit_s`` is stopped (timeout)."""

from __future__ import annotations

from scheduler.domain.status import TerminationReason
from scheduler.loops.base import Loop
from scheduler.runtime import Runtime
from scheduler.store.attempts import Effects, overdue_attempts, request_stop
from scheduler.store.models import utcnow


def stop_overdue(rt: Runtime) -> int:
    now = utcnow()
    with rt.db.read() as session:
        if not overdue_attempts(session, now):
            return 0
    effects = Effects()
    with rt.db.write() as session:
        overdue = overdue_attempts(session, now)
        for attempt, limit_s in overdue:
            message = f"time limit of {limit_s}s reached"
            effects.merge(request_stop(session, attempt, TerminationReason.TIMEOUT, now, message))
    rt.notifier.notify(effects)
    return len(overdue)


def limits_loop(rt: Runtime) -> Loop:
    return Loop(name="limits", interval_s=1.0, run_once=lambda: stop_overdue(rt))
