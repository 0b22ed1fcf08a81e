"""Batch submit and job arrays: many jobs, one transaction, one wake of the cycle.

Durable before the reply like a single submit: the one commit of the batch happens
before this returns. A bad item refuses the whole batch, naming it (``jobs.3.queue``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.domain.errors import Invalid
from scheduler.domain.snapshot import NodeView
from scheduler.domain.spec import JobSpec
from scheduler.domain.views import BatchResult
from scheduler.policy import can_ever_fit
from scheduler.runtime import Runtime
from scheduler.store import batch as store_batch
from scheduler.store.jobs import DuplicateKey
from scheduler.store.models import utcnow
from scheduler.store.snapshot import node_views, request_of


@dataclass(frozen=True)
class _Batch:
    specs: Sequence[JobSpec]
    key: str | None
    indices: Sequence[int] | None  # set for an array
    submitted_by: str | None


def submit_batch(
    rt: Runtime,
    specs: Sequence[JobSpec],
    idempotency_key: str | None = None,
    *,
    submitted_by: str | None = None,
) -> BatchResult:
    """Store every job or none (committed before this returns)."""
    return _retrying(rt, _Batch(specs, idempotency_key, None, submitted_by))


def submit_array(
    rt: Runtime,
    spec: JobSpec,
    indices: Sequence[int],
    idempotency_key: str | None = None,
    *,
    submitted_by: str | None = None,
) -> BatchResult:
    """One job per index, all with ``spec``; the agent tells each its index."""
    return _retrying(rt, _Batch([spec] * len(indices), idempotency_key, indices, submitted_by))


def _retrying(rt: Runtime, batch: _Batch) -> BatchResult:
    _check_key(batch.key)
    try:
        return _submit_once(rt, batch)
    except DuplicateKey:  # a concurrent batch with the same key won the race
        return _submit_once(rt, batch)


def _submit_once(rt: Runtime, batch: _Batch) -> BatchResult:
    specs, key, indices = batch.specs, batch.key, batch.indices
    with rt.db.write() as session:
        if key is not None:
            existing = store_batch.find_batch(session, key, specs)
            if existing is not None:
                return BatchResult(
                    job_ids=[row.id for row in existing],
                    array_id=existing[0].array_id,
                    created=False,
                )
        _check_fits(specs, node_views(session))
        ids = store_batch.insert_batch(
            session,
            specs,
            now=utcnow(),
            idempotency_key=key,
            array_indices=indices,
            submitted_by=batch.submitted_by,
        )
    rt.notifier.wake(schedule=True)
    return BatchResult(job_ids=ids, array_id=ids[0] if indices is not None else None, created=True)


def _check_key(key: str | None) -> None:
    if key is not None and len(key) > store_batch.MAX_BATCH_KEY_CHARS:
        raise Invalid(
            f"a batch's idempotency key is at most {store_batch.MAX_BATCH_KEY_CHARS} characters",
            field="idempotency_key",
        )


def _check_fits(specs: Sequence[JobSpec], nodes: Sequence[NodeView]) -> None:
    """Refuse the batch if some job could never be placed on the nodes known now."""
    if not nodes:
        return
    seen: dict[str, bool] = {}  # an array repeats one spec: check each distinct one once
    for index, spec in enumerate(specs):
        resources = spec.resources.model_dump_json()
        if resources not in seen:
            seen[resources] = can_ever_fit(request_of(spec.model_dump(mode="json")), nodes)
        if not seen[resources]:
            raise Invalid(
                f"jobs.{index}.resources: no node can ever hold this job "
                f"({spec.resources.gpus} GPU(s) on each of {spec.resources.nodes} node(s))",
                field=f"jobs.{index}.resources",
                code="unsatisfiable",
            )


def cancel_array(rt: Runtime, array_id: int) -> BatchResult:
    """Cancel every job of the array that has not ended, in one transaction.

    Pending jobs end now; live ones are stopped first (SIGTERM, grace, SIGKILL). The
    reply lists the jobs this cancel reached; ended ones are left as they are.
    """
    with rt.db.write() as session:
        reached, effects = store_batch.cancel_array(session, array_id, utcnow())
    rt.notifier.notify(effects)
    return BatchResult(job_ids=reached, array_id=array_id, created=False)
