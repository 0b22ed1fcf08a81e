"""Factories for database tests: queues, nodes with GPUs, jobs, placements and agent syncs.

Each goes through the store function the server uses (``create_queue``, ``upsert_node``,
``insert_job``, ``apply_decisions``, ``apply_sync``), never around it. Defaults describe
the common case (queue ``default``, a node of 4 A100-80GB GPUs, a job asking 1 GPU on 1
node); a test names only what it is about. Time is explicit: ``at(s)`` is ``T0 + s``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.domain.decisions import Decisions, Placement
from scheduler.domain.retry import RetrySettings
from scheduler.domain.snapshot import GpuRef
from scheduler.domain.spec import JobSpec, QueueSpec, Resources
from scheduler.domain.sync import (
    AttemptReport,
    AttemptState,
    GpuFacts,
    NodeFacts,
    ProgressReport,
    SyncReply,
    SyncRequest,
)
from scheduler.store.agent_sync import apply_sync, desired_state
from scheduler.store.db import Database
from scheduler.store.jobs import insert_job, latest_attempt
from scheduler.store.models import JobRow, NodeRow, QueueRow
from scheduler.store.nodes import upsert_node
from scheduler.store.placements import apply_decisions
from scheduler.store.queues import create_queue

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
A100 = "A100-80GB"
A100_MIB = 81_920
CHECKPOINTS = Path("/shared/checkpoints")
RETRY = RetrySettings()  # 10 s, doubled per retry
NODE_TIMEOUT_S = 30.0


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def add_queue(session: Session, name: str = "default", **fields: Any) -> QueueRow:
    return create_queue(session, QueueSpec(name=name, **fields), T0)


def node_facts(
    name: str, gpus: int = 4, *, gpu_type: str = A100, memory_mib: int = A100_MIB
) -> NodeFacts:
    return NodeFacts(
        name=name,
        hostname=f"{name}.example",
        cpus=32,
        memory_total_mib=256 * 1024,
        gpus=[
            GpuFacts(
                index=i,
                uuid=f"GPU-{name}-{i}",
                name=f"NVIDIA {gpu_type}",
                gpu_type=gpu_type,
                memory_total_mib=memory_mib,
            )
            for i in range(gpus)
        ],
    )


def add_node(
    session: Session, name: str, gpus: int = 4, *, now: datetime = T0, **facts: Any
) -> NodeRow:
    node, _ = upsert_node(session, node_facts(name, gpus, **facts), now)
    return node


def job_spec(gpus: int = 1, nodes: int = 1, **fields: Any) -> JobSpec:
    fields.setdefault("command", ["python", "train.py"])
    resources = {"gpus": gpus, "nodes": nodes, **fields.pop("resources", {})}
    return JobSpec(resources=Resources(**resources), **fields)


def add_job(
    session: Session, gpus: int = 1, nodes: int = 1, *, now: datetime = T0, **fields: Any
) -> JobRow:
    return insert_job(session, job_spec(gpus, nodes, **fields), now=now)


def placement(job_id: int, gpus: Mapping[str, Iterable[int]]) -> Placement:
    """Start ``job_id`` with ``gpus[node] = indices``; node rank follows the dict's order."""
    refs = tuple(GpuRef(node, i) for node, indices in gpus.items() for i in indices)
    return Placement(job_id=job_id, nodes=tuple(gpus), gpus=refs)


def place(session: Session, *placements: Placement, now: datetime = T0) -> int:
    """Apply these placements as a cycle does; returns how many took effect."""
    return apply_decisions(session, Decisions(placements=placements), now).placed


def report(
    attempt_id: int,
    state: AttemptState = AttemptState.RUNNING,
    *,
    exit_code: int | None = None,
    stopped_by_agent: bool = False,
    log: tuple[int, bytes] = (0, b""),
    message: str = "",
    progress: ProgressReport | None = None,
) -> AttemptReport:
    return AttemptReport(
        attempt_id=attempt_id,
        state=state,
        pid=4242,
        exit_code=exit_code,
        stopped_by_agent=stopped_by_agent,
        message=message,
        log_offset=log[0],
        log_data=log[1],
        progress=progress,
    )


def exited(
    attempt_id: int,
    exit_code: int,
    *,
    stopped_by_agent: bool = False,
    log: tuple[int, bytes] = (0, b""),
    progress: ProgressReport | None = None,
) -> AttemptReport:
    return report(
        attempt_id,
        AttemptState.EXITED,
        exit_code=exit_code,
        stopped_by_agent=stopped_by_agent,
        log=log,
        progress=progress,
    )


def launch_failed(attempt_id: int, message: str = "train.py: not found") -> AttemptReport:
    return report(attempt_id, AttemptState.LAUNCH_FAILED, message=message)


def sync(
    db: Database,
    facts: NodeFacts,
    *reports: AttemptReport,
    now: datetime = T0,
    retry: RetrySettings = RETRY,
) -> SyncReply:
    """One agent sync as the server runs it: apply, then read the desired state, one txn."""
    req = SyncRequest(node=facts, attempts=list(reports))
    with db.write() as session:
        node, _ = apply_sync(session, req, now, retry)
        return desired_state(
            session, node, req, CHECKPOINTS, interval_s=2.0, node_timeout_s=NODE_TIMEOUT_S
        )


def count(session: Session, row: type[Any], *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(row).where(*where)) or 0)


def register(db: Database, *nodes: NodeFacts, now: datetime = T0, **queue: Any) -> None:
    """Queue ``default`` (with ``queue`` fields) and these nodes, by a first agent sync."""
    with db.write() as session:
        add_queue(session, **queue)
    for facts in nodes:
        sync(db, facts, now=now)


def place_job(db: Database, job_id: int, gpus: Mapping[str, Iterable[int]], now: datetime) -> int:
    """Place the (pending) job on ``gpus`` as a cycle would; its new attempt's id."""
    with db.write() as session:
        assert place(session, placement(job_id, gpus), now=now) == 1, f"job {job_id} not placed"
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
        return attempt.id


def submit_and_place(
    db: Database, gpus: Mapping[str, Iterable[int]], *, now: datetime = T0, **spec: Any
) -> tuple[int, int]:
    """A job asking for exactly ``gpus`` (the same count on each node), placed there a
    second after ``now``: (job id, attempt id)."""
    per_node = len(list(next(iter(gpus.values()))))
    with db.write() as session:
        job_id = add_job(session, gpus=per_node, nodes=len(gpus), now=now, **spec).id
    return job_id, place_job(db, job_id, gpus, now + timedelta(seconds=1))
