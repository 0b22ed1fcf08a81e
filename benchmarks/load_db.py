"""The load benchmark's database: a private PostgreSQL, and finished history seeded fast.

History is written straight into the tables through the ORM mapping
(``scheduler.store.models``, so the columns and their defaults are the schema's), in
chunks of ``INSERT_CHUNK`` jobs per transaction: running 100,000 jobs through agents
would take hours, and what the server's queries meet is the rows, not how they came.
Each finished job is what a succeeded one-GPU job leaves: the job, its ``submitted``
and ``status`` events, one ended attempt, its exited part and its released allocation.
Jobs follow one another on every GPU over the past ``HISTORY_DAYS`` days, so no GPU
is ever in two allocations at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from scheduler.domain.spec import JobSpec, Resources
from scheduler.domain.status import AttemptStatus, JobStatus, PartState, TerminationReason
from scheduler.store.db import Database
from scheduler.store.jobs import spec_digest
from scheduler.store.models import (
    AllocationRow,
    AttemptPartRow,
    AttemptRow,
    GpuRow,
    JobEventRow,
    JobRow,
    NodeRow,
    QueueRow,
)
from scheduler.store.tokens import create_token
from tests.conftest import _Cluster, _fresh_postgres_database, _pg_bin

HISTORY_DAYS = 7
INSERT_CHUNK = 5000
SUCCEEDED = TerminationReason.SUCCEEDED


@contextlib.contextmanager
def postgres(server_url: str | None) -> Iterator[tuple[str, Path | None]]:
    """A fresh database (its URL, and the private cluster's data dir): on ``server_url``,
    else on a private cluster (as the tests start one) stopped at the end."""
    if server_url is not None:
        url, drop = _fresh_postgres_database(server_url)
        try:
            yield url, None
        finally:
            drop()
        return
    bin_dir = _pg_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL binaries (initdb) found; pass --database-url")
    cluster = _Cluster(bin_dir)
    try:
        url, drop = _fresh_postgres_database(cluster.start())
        try:
            yield url, cluster.data
        finally:
            drop()
    finally:
        cluster.stop()


@dataclass(frozen=True)
class Finished:
    """One finished job of the history: where it ran and when."""

    number: int
    node_id: int
    gpu_index: int
    gpu_uuid: str
    began: datetime
    ended: datetime


def seed_history(db: Database, count: int) -> None:
    """``count`` succeeded jobs on the registered GPUs of the ``default`` queue."""
    with db.read() as session:
        queue_id = session.scalars(select(QueueRow.id).where(QueueRow.name == "default")).one()
        gpus = session.execute(select(GpuRow.node_id, GpuRow.index, GpuRow.uuid)).all()
    if not gpus:
        raise RuntimeError("no GPUs registered to seed the history on")
    spec = JobSpec(command=["true"], resources=Resources(gpus=1))
    template = {
        "queue_id": queue_id,
        "status": JobStatus.SUCCEEDED,
        "spec": spec.model_dump(mode="json"),
        "spec_digest": spec_digest(spec),
        "gpus_requested": 1,
        "submitted_by": "load",
        "attempts_count": 1,
        "exit_code": 0,
        "termination_reason": SUCCEEDED,
    }
    slot_s = HISTORY_DAYS * 86400 / -(-count // len(gpus))  # per job, on each GPU
    start = datetime.now(UTC) - timedelta(days=HISTORY_DAYS)
    for first in range(0, count, INSERT_CHUNK):
        chunk = []
        for n in range(first, min(count, first + INSERT_CHUNK)):
            node_id, index, uuid = gpus[n % len(gpus)]
            began = start + timedelta(seconds=(n // len(gpus)) * slot_s)
            ended = began + timedelta(seconds=slot_s * 0.9)
            chunk.append(Finished(n, node_id, index, uuid, began, ended))
        with db.write() as session:
            _insert_chunk(session, chunk, template)


def _insert_chunk(session: Session, chunk: list[Finished], template: dict[str, Any]) -> None:
    jobs = [
        template
        | {"name": f"history-{f.number}", "submitted_at": f.began, "updated_at": f.ended}
        | {"started_at": f.began, "ended_at": f.ended}
        | {"attained_gpu_s": (f.ended - f.began).total_seconds()}
        for f in chunk
    ]
    job_ids = _insert_returning_ids(session, JobRow, jobs)
    attempts = [
        {"job_id": job_id, "number": 1, "status": AttemptStatus.ENDED, "gpu_count": 1}
        | {"created_at": f.began, "started_at": f.began, "ended_at": f.ended}
        | {"reason": SUCCEEDED, "exit_code": 0}
        for job_id, f in zip(job_ids, chunk, strict=True)
    ]
    attempt_ids = _insert_returning_ids(session, AttemptRow, attempts)
    parts, allocations, events = [], [], []
    for job_id, attempt_id, f in zip(job_ids, attempt_ids, chunk, strict=True):
        where = {"attempt_id": attempt_id, "node_id": f.node_id}
        parts.append(
            where
            | {"rank": 0, "state": PartState.EXITED, "exit_code": 0}
            | {"started_at": f.began, "ended_at": f.ended}
        )
        allocations.append(
            where
            | {"gpu_index": f.gpu_index, "gpu_uuid": f.gpu_uuid}
            | {"created_at": f.began, "released_at": f.ended}
        )
        events.append(_event(job_id, f.began, "submitted", None, "submitted to queue default"))
        events.append(_event(job_id, f.ended, "status", JobStatus.SUCCEEDED, "exited 0"))
    session.execute(insert(AttemptPartRow), parts)
    session.execute(insert(AllocationRow), allocations)
    session.execute(insert(JobEventRow), events)


def _event(
    job_id: int, at: datetime, kind: str, new: JobStatus | None, message: str
) -> dict[str, Any]:
    old = JobStatus.RUNNING if new is not None else None
    return {"job_id": job_id, "at": at, "kind": kind, "old_status": old, "new_status": new} | {
        "message": message
    }


def _insert_returning_ids(session: Session, row: Any, values: list[dict[str, Any]]) -> list[int]:
    stmt = insert(row).returning(row.id, sort_by_parameter_order=True)
    return list(session.scalars(stmt, values))


def agent_tokens(db: Database, nodes: list[str]) -> dict[str, str]:
    """node name -> a new agent token for it (one transaction), as ``corral token create
    --node`` would make: each simulated agent syncs with its own node's token."""
    now = datetime.now(UTC)
    with db.write() as session:
        return {
            node: create_token(session, f"agent-{node}", "agent", now, node_name=node)
            for node in nodes
        }


def job_counts(db: Database) -> dict[str, int]:
    """Jobs by status, and the nodes, as the run left them."""
    counts: dict[str, int] = {}
    with db.read() as session:
        for status in session.scalars(select(JobRow.status)):
            counts[str(status)] = counts.get(str(status), 0) + 1
        counts["nodes"] = len(session.scalars(select(NodeRow.id)).all())
    return counts
