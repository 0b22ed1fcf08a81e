"""One scheduling cycle, as numbered steps, each with its own transaction boundary.

1. snapshot: read the cluster in one read transaction (``build_snapshot``).
2. decide:   the pure policy turns it into Decisions (no I/O, no clock).
3. apply:    one write transaction turns placements into attempts and allocations
             (compare-and-set on each job, the schema refusing a double-booked GPU)
             and records why the others wait.
4. report:   after the commit, wake the agents that got work; return the figures.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from scheduler.domain.decisions import Decisions
from scheduler.domain.snapshot import Snapshot
from scheduler.runtime import Runtime
from scheduler.store.models import utcnow
from scheduler.store.placements import apply_decisions
from scheduler.store.snapshot import build_snapshot

log = logging.getLogger("corral.cycle")


@dataclass(frozen=True)
class CycleReport:
    pending: int
    placed: int
    waiting: int
    duration_s: float


def run_cycle(rt: Runtime) -> CycleReport:
    started = time.perf_counter()
    snapshot = _take_snapshot(rt)  # 1. snapshot
    decisions = rt.policy.decide(snapshot)  # 2. decide
    placed = _apply(rt, decisions)  # 3. apply (4. report: it wakes the agents after commit)
    report = CycleReport(
        pending=len(snapshot.pending),
        placed=placed,
        waiting=len(decisions.waits),
        duration_s=time.perf_counter() - started,
    )
    if placed:
        log.info("cycle placed %d of %d pending job(s)", placed, report.pending)
    return report


def _take_snapshot(rt: Runtime) -> Snapshot:
    with rt.db.read() as session:
        return build_snapshot(session, utcnow())


def _apply(rt: Runtime, decisions: Decisions) -> int:
    if not decisions.placements and not decisions.waits:
        return 0
    with rt.db.write() as session:
        effects, placed = apply_decisions(session, decisions, utcnow())
    rt.notifier.notify(effects)  # 4. report, after the commit
    return placed
