"""Usage: every ~30 s each queue's decayed usage is brought up to date.

``usage = usage * 2^(-dt / half_life) + GPU-seconds held during dt`` (see
``scheduler.domain.usage``); the half-life is ``--usage-half-life`` (default 7 d). The
fair-share ordering breaks ties with it, and ``corral queues`` shows it.
"""

from __future__ import annotations

from datetime import datetime

from scheduler.loops.base import Loop
from scheduler.runtime import Runtime
from scheduler.store.models import utcnow
from scheduler.store.usage import accrue_usage


def update_usage(rt: Runtime, now: datetime | None = None) -> int:
    """One pass; returns how many queues were brought up to ``now``."""
    with rt.db.write() as session:
        return accrue_usage(session, now or utcnow(), rt.settings.params.usage_half_life_s)


def usage_loop(rt: Runtime) -> Loop:
    return Loop(
        name="usage", interval_s=rt.settings.usage_interval_s, run_once=lambda: update_usage(rt)
    )
