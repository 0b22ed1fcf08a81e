"""One scheduling cycle, as numbered steps, each with its own transaction boundary.

1. snapshot: read the cluster in one read transaction (``build_snapshot``).
2. decide:   the pure policy turns it into Decisions (no I/O, no clock).
3. apply:    one write transaction turns placements into attempts and allocations
             (compare-and-set on each job, the schema refusing a double-booked GPU),
             preemptions into stop requests (reason ``preempted``), and records why
             the others wait, with their place in line (refreshed at most once a
             second when only the place changed) and estimated start.
4. report:   after the commit, wake the agents that got work or a stop; return the figures.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from scheduler.domain.decisions import Decisions
from scheduler.domain.snapshot import Snapshot
from scheduler.runtime import Runtime, kept_for
from scheduler.store.leadership import fence
from scheduler.store.models import utcnow
from scheduler.store.placements import Applied, apply_decisions
from scheduler.store.snapshot import build_snapshot

log = logging.getLogger("corral.cycle")


@dataclass(frozen=True)
class CycleReport:
    pending: int
    placed: int
    waiting: int
    duration_s: float
    preempted: int = 0  # attempts asked to stop so that others can run


def run_cycle(rt: Runtime) -> CycleReport:
    started = time.perf_counter()
    snapshot = _take_snapshot(rt)  # 1. snapshot
    decisions = rt.policy.decide(snapshot)  # 2. decide
    applied = _apply(rt, decisions)  # 3. apply (4. report: it wakes the agents after commit)
    report = CycleReport(
        pending=len(snapshot.pending),
        placed=applied.placed,
        waiting=len(decisions.waits),
        duration_s=time.perf_counter() - started,
        preempted=applied.preempted,
    )
    rt.metrics.cycle_duration.observe(report.duration_s)
    if applied.placed or applied.preempted:
        log.info(
            "cycle placed %d of %d pending job(s), preempted %d",
            applied.placed,
            report.pending,
            applied.preempted,
        )
    return report


def _take_snapshot(rt: Runtime) -> Snapshot:
    with rt.db.read() as session:
        return build_snapshot(session, utcnow())


# A draining queue moves every waiting job up a place each cycle, and cycles may run
# many times a second: places in line alone are written at most this often.
POSITIONS_EVERY_S = 1.0
_positions_written: dict[int, list[float]] = {}  # per server: when they last were


def _apply(rt: Runtime, decisions: Decisions) -> Applied:
    if not (decisions.placements or decisions.waits or decisions.preemptions):
        return Applied()
    last = kept_for(_positions_written, rt, lambda: [-math.inf])
    positions = time.monotonic() - last[0] >= POSITIONS_EVERY_S
    with rt.db.write() as session:
        if rt.election is not None:  # a deposed leader's placements must not commit
            fence(session, rt.leader_epoch)
        applied = apply_decisions(session, decisions, utcnow(), positions=positions)
    if positions:
        last[0] = time.monotonic()
    rt.notifier.notify(applied.effects)  # 4. report, after the commit
    return applied
