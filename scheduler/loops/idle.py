"""Idle detection: flag attempts whose GPUs all stayed under ``--idle-util-pct`` for
``--idle-window`` (``attempts.idle_since``, shown by ``corral jobs`` and ``show``), and
stop those of queues with ``idle_action: stop``.

A stopped idle attempt ends ``cancelled``: requeueing it would only hold idle GPUs
again. The job's event says why.
"""

from __future__ import annotations

import logging
from datetime import datetime

from scheduler.domain.status import TerminationReason
from scheduler.loops.base import Loop
from scheduler.runtime import Runtime
from scheduler.store.attempts import Effects, request_stop
from scheduler.store.idle import mark_idle
from scheduler.store.models import utcnow

log = logging.getLogger("corral.loops.idle")


def check_idle(rt: Runtime, now: datetime | None = None) -> int:
    """One pass; returns how many attempts it asked to stop."""
    s = rt.settings
    now = now or utcnow()
    effects = Effects()
    stopped = 0
    with rt.db.write() as session:
        for found in mark_idle(session, now, s.idle_util_pct, s.idle_window_s):
            if found.idle_action != "stop":
                continue
            message = (
                f"stopped as idle: its GPUs stayed under {s.idle_util_pct:g}% utilisation "
                f"for {s.idle_window_s / 60:g} min (queue {found.queue} has idle_action: stop)"
            )
            effects.merge(
                request_stop(session, found.attempt, TerminationReason.CANCELLED, now, message)
            )
            stopped += 1
    if stopped:
        log.info("stopped %d idle attempt(s)", stopped)
    rt.notifier.notify(effects)
    return stopped


def idle_loop(rt: Runtime) -> Loop:
    return Loop(
        name="idle", interval_s=rt.settings.idle_interval_s, run_once=lambda: check_idle(rt)
    )
