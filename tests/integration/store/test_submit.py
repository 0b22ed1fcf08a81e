"""Submit through the service: durable before it returns, idempotent by key, and a
refused submission writes nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from scheduler.domain.errors import Conflict, Invalid
from scheduler.domain.status import JobStatus
from scheduler.runtime import Runtime
from scheduler.services import jobs as job_service
from scheduler.settings import ServerSettings
from scheduler.store.db import Database
from scheduler.store.jobs import get_job
from scheduler.store.models import JobEventRow, JobRow
from tests.factories import add_node, add_queue, job_spec


def _runtime(db: Database, tmp_path: Path, *, nodes: int = 1) -> Runtime:
    with db.write() as session:
        add_queue(session)
        for n in range(nodes):
            add_node(session, f"n{n + 1}", gpus=4)
    return Runtime(db=db, settings=ServerSettings(data_dir=tmp_path, database_url=db.url))


def _written(db: Database) -> tuple[int, int]:
    with db.read() as session:
        return (
            len(session.query(JobRow.id).all()),
            len(session.query(JobEventRow.id).all()),
        )


def test_a_submitted_job_is_durable_when_submit_returns(db: Database, tmp_path: Path) -> None:
    rt = _runtime(db, tmp_path)
    view, created = job_service.submit(rt, job_spec(gpus=2, name="bert"))
    assert created
    other = Database(db.url)  # another process's view: only committed data is there
    try:
        with other.read() as session:
            job = get_job(session, view.id)
            assert (job.name, job.status, job.gpus_requested) == ("bert", JobStatus.PENDING, 2)
    finally:
        other.dispose()


def test_the_same_idempotency_key_and_spec_return_the_same_job(
    db: Database, tmp_path: Path
) -> None:
    rt = _runtime(db, tmp_path)
    first, created = job_service.submit(rt, job_spec(), idempotency_key="k-1")
    again, created_again = job_service.submit(rt, job_spec(), idempotency_key="k-1")
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    other, _ = job_service.submit(rt, job_spec(), idempotency_key="k-2")
    assert other.id != first.id
    assert _written(db)[0] == 2


def test_the_same_idempotency_key_with_another_spec_is_a_conflict(
    db: Database, tmp_path: Path
) -> None:
    rt = _runtime(db, tmp_path)
    job_service.submit(rt, job_spec(gpus=1), idempotency_key="k-1")
    before = _written(db)
    with pytest.raises(Conflict) as err:
        job_service.submit(rt, job_spec(gpus=2), idempotency_key="k-1")
    assert err.value.field == "idempotency_key"
    assert _written(db) == before


def test_an_unknown_queue_is_invalid_and_writes_nothing(db: Database, tmp_path: Path) -> None:
    rt = _runtime(db, tmp_path)
    with pytest.raises(Invalid) as err:
        job_service.submit(rt, job_spec(queue="nope"), idempotency_key="k-1")
    assert err.value.field == "queue"
    assert _written(db) == (0, 0)


UNSATISFIABLE: dict[str, dict[str, Any]] = {
    "more GPUs than any node": {"gpus": 8},
    "a GPU type no node has": {"gpus": 1, "resources": {"gpu_type": "H100-80GB"}},
    "more GPU memory than any GPU": {"gpus": 1, "resources": {"gpu_memory_mib": 200_000}},
    "more nodes than exist": {"gpus": 4, "nodes": 3},
}


@pytest.mark.parametrize("spec", UNSATISFIABLE.values(), ids=UNSATISFIABLE.keys())
def test_a_job_no_known_node_could_hold_is_refused_and_writes_nothing(
    db: Database, tmp_path: Path, spec: dict[str, Any]
) -> None:
    rt = _runtime(db, tmp_path, nodes=2)
    with pytest.raises(Invalid) as err:
        job_service.submit(rt, job_spec(**spec))
    assert err.value.code == "unsatisfiable"
    assert _written(db) == (0, 0)


def test_a_job_that_fits_on_all_nodes_together_is_accepted(db: Database, tmp_path: Path) -> None:
    rt = _runtime(db, tmp_path, nodes=2)
    view, created = job_service.submit(rt, job_spec(gpus=4, nodes=2))
    assert created
    assert view.status == JobStatus.PENDING.value


def test_concurrent_submits_with_one_key_create_one_job(db: Database, tmp_path: Path) -> None:
    rt = _runtime(db, tmp_path)
    start = threading.Barrier(4)

    def submit() -> tuple[int, bool]:
        start.wait()
        view, created = job_service.submit(rt, job_spec(), idempotency_key="k-race")
        return view.id, created

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: submit(), range(4)))
    assert len({job_id for job_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert _written(db)[0] == 1
