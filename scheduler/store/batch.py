"""Many jobs in one transaction: a batch submit or a job array.

Invariant: a batch is stored whole or not at all. Every check (queue known and a leaf,
idempotency key unused or used for the same specs) runs before the first row is
written, and the rows go in with one multi-row INSERT per table, so 1,000 jobs cost a
few statements instead of a few thousand. A refusal names the item as
``jobs.<index>.<field>``.

An idempotency key of a batch names its jobs ``<key>#0``, ``<key>#1``, ...: a retried
request with the same key and specs finds them and stores nothing.

An array's id is the id of its first job (Slurm's array job id); every job of the
array carries it with its own index.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scheduler.domain.errors import Conflict, Invalid, NotFound
from scheduler.domain.spec import JobSpec
from scheduler.domain.status import TERMINAL, JobStatus
from scheduler.store.attempts import Effects, cancel_job
from scheduler.store.jobs import DuplicateKey, spec_digest
from scheduler.store.models import JobEventRow, JobRow, QueueRow
from scheduler.store.queues import assert_takes_jobs

MAX_BATCH_KEY_CHARS = 100  # the item suffix (``#9999``) must fit the 128-char column


def item_key(key: str, index: int) -> str:
    return f"{key}#{index}"


def array_jobs(session: Session, array_id: int, *, for_update: bool = False) -> list[JobRow]:
    """The jobs of an array, by index (none: no such array)."""
    stmt = select(JobRow).where(JobRow.array_id == array_id).order_by(JobRow.array_index)
    if for_update:
        stmt = stmt.with_for_update(of=JobRow)
    return list(session.scalars(stmt).unique())


def find_batch(session: Session, key: str, specs: Sequence[JobSpec]) -> list[JobRow] | None:
    """The jobs an earlier batch with ``key`` stored, in request order; None if none.

    The same key with other specs (or another number of them) is a conflict.
    """
    keys = [item_key(key, i) for i in range(len(specs))]
    first = session.scalars(select(JobRow.id).where(JobRow.idempotency_key == keys[0])).first()
    if first is None:
        return None
    stmt = select(JobRow).where(JobRow.idempotency_key.like(f"{_escape_like(key)}#%", "\\"))
    found = {row.idempotency_key: row for row in session.scalars(stmt).unique()}
    rows = [found.get(k) for k in keys]
    same = len(found) == len(keys) and all(
        row is not None and row.spec_digest == spec_digest(spec)
        for row, spec in zip(rows, specs, strict=True)
    )
    if not same:
        raise Conflict(
            f"idempotency key {key!r} was already used for another batch", field="idempotency_key"
        )
    return [row for row in rows if row is not None]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def leaf_queues(session: Session, specs: Sequence[JobSpec]) -> dict[str, QueueRow]:
    """Each named queue, share-locked so none becomes an org while the jobs go in."""
    names = sorted({spec.queue for spec in specs})
    stmt = select(QueueRow).where(QueueRow.name.in_(names)).with_for_update(read=True)
    queues = {q.name: q for q in session.scalars(stmt)}
    for index, spec in enumerate(specs):
        queue = queues.get(spec.queue)
        if queue is None:
            raise Invalid(
                f"jobs.{index}.queue: unknown queue {spec.queue!r}",
                field=f"jobs.{index}.queue",
                code="unknown_queue",
            )
    for name, queue in queues.items():
        try:
            assert_takes_jobs(session, queue)
        except Invalid as exc:
            index = next(i for i, spec in enumerate(specs) if spec.queue == name)
            raise Invalid(
                f"jobs.{index}.queue: {exc.message}", field=f"jobs.{index}.queue"
            ) from None
    return queues


def insert_batch(
    session: Session,
    specs: Sequence[JobSpec],
    *,
    now: datetime,
    idempotency_key: str | None = None,
    array_indices: Sequence[int] | None = None,
    submitted_by: str | None = None,
) -> list[int]:
    """Insert the jobs (pending) and their ``submitted`` events; their ids in order.

    With ``array_indices`` (one per spec) the jobs form an array whose id is the first
    job's. Raises ``DuplicateKey`` when a concurrent batch with the key won the race.
    """
    queues = leaf_queues(session, specs)
    values = [
        _job_values(spec, queues[spec.queue], now, idempotency_key, i)
        | {"submitted_by": submitted_by}
        for i, spec in enumerate(specs)
    ]
    if array_indices is not None:
        for row, index in zip(values, array_indices, strict=True):
            row["array_index"] = index
    stmt = insert(JobRow).returning(JobRow.id, sort_by_parameter_order=True)
    try:
        with session.begin_nested():
            ids = list(session.scalars(stmt, values))
    except IntegrityError as exc:
        if idempotency_key is None:
            raise
        raise DuplicateKey(idempotency_key) from exc
    if array_indices is not None:  # its id is its first job's: known only now
        session.execute(update(JobRow).where(JobRow.id.in_(ids)).values(array_id=ids[0]))
    events = [
        {
            "job_id": job_id,
            "at": now,
            "kind": "submitted",
            "message": f"submitted to queue {spec.queue}",
            "old_status": None,
            "new_status": None,
        }
        for job_id, spec in zip(ids, specs, strict=True)
    ]
    session.execute(insert(JobEventRow), events)
    return ids


def _job_values(
    spec: JobSpec, queue: QueueRow, now: datetime, key: str | None, index: int
) -> dict[str, Any]:
    return {
        "name": spec.display_name(),
        "queue_id": queue.id,
        "status": JobStatus.PENDING,
        "priority": spec.priority,
        "spec": spec.model_dump(mode="json"),
        "gpus_requested": spec.resources.total_gpus,
        "submitted_at": now,
        "updated_at": now,
        "idempotency_key": item_key(key, index) if key is not None else None,
        "spec_digest": spec_digest(spec),
        "attempts_count": 0,
        "retries_used": 0,
        "attained_gpu_s": 0.0,
    }


def cancel_array(session: Session, array_id: int, now: datetime) -> tuple[list[int], Effects]:
    """Cancel the array's jobs that have not ended; (their ids, what to wake)."""
    jobs = array_jobs(session, array_id, for_update=True)
    if not jobs:
        raise NotFound(f"no array {array_id}", field="array_id")
    effects = Effects()
    reached = [job for job in jobs if job.status not in TERMINAL]
    for job in reached:
        effects.merge(cancel_job(session, job, now, "its array was cancelled"))
    return [job.id for job in reached], effects
