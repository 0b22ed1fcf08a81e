"""Small traces and clusters for simulator tests, written by the tests themselves.

``trace_job`` makes a ``TraceJob`` (1 GPU, queue ``q``, submitted at 0 unless told);
``write_philly``/``write_alibaba``/``write_history`` write a file in a published format
from rows, so loaders are tested on text exactly as users have it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from scheduler.domain.decisions import Decisions, Preemption
from scheduler.domain.snapshot import Snapshot
from scheduler.policy import make_policy
from scheduler.sim.rows import TraceJob

PHILLY_HEADER = "timestamp,duration,num_gpus,gpu_time,cluster"
ALIBABA_HEADER = (
    "job_id,user,num_gpu,num_cpu,duration,submit_time,num_inst,gpu_type,"
    "user_dur,group_dur,group_gpu_dur"
)


def trace_job(
    job_id: int,
    gpus: int = 1,
    duration_s: float = 100.0,
    *,
    at: float = 0.0,
    queue: str = "q",
    priority: int = 0,
    nodes: int | None = None,
    gpu_type: str | None = None,
) -> TraceJob:
    return TraceJob(
        job_id=job_id,
        queue=queue,
        submitted_at=at,
        duration_s=duration_s,
        gpus=gpus,
        nodes=nodes,
        gpu_type=gpu_type,
        priority=priority,
    )


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def write_philly(path: Path, rows: Sequence[str]) -> Path:
    """Rows as ``timestamp,duration,num_gpus,gpu_time,cluster`` text, under the header."""
    return write_lines(path, [PHILLY_HEADER, *rows])


def write_alibaba(path: Path, rows: Sequence[str]) -> Path:
    return write_lines(path, [ALIBABA_HEADER, *rows])


def write_history(path: Path, records: Sequence[dict[str, Any] | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return write_lines(path, lines)


def fifo() -> Any:
    """Priority then FIFO, greedy: the simplest registered composition."""
    return make_policy(ordering="priority_fifo", backfill="greedy")


class PreemptAt:
    """FIFO, plus: at ``at`` s, preempt every running attempt of ``job_id`` (a test policy)."""

    def __init__(self, at: float, job_id: int) -> None:
        self.at = at
        self.job_id = job_id
        self.inner = fifo()
        self.name = "preempt-at"

    def decide(self, snapshot: Snapshot) -> Decisions:
        decisions = self.inner.decide(snapshot)
        if snapshot.now != self.at:
            return decisions
        victims = tuple(
            Preemption(r.attempt_id, r.job_id, "test")
            for r in snapshot.running
            if r.job_id == self.job_id and not r.stopping
        )
        return Decisions(decisions.placements, decisions.waits, victims)
