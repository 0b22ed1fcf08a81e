"""Submit over HTTP: 201 and durable before the reply; idempotent by ``Idempotency-Key``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from scheduler.store.db import Database
from scheduler.store.jobs import get_job
from tests.factories import node_facts
from tests.integration.api.harness import JOBS, Api, spec_body


def test_a_submit_is_201_with_the_job(api: Api) -> None:
    api.sync(node_facts("n1", 4))
    response = api.post(JOBS, json=spec_body(gpus=2, name="bert", env={"SEED": "7"}))
    assert response.status_code == 201, response.text
    job = response.json()
    assert isinstance(job["id"], int) and job["id"] >= 1
    assert (job["name"], job["queue"], job["status"]) == ("bert", "default", "pending")
    assert job["spec"]["resources"]["gpus"] == 2
    assert job["spec"]["env"] == {"SEED": "7"}
    assert api.job(job["id"])["status"] == "pending"


def test_a_submitted_job_is_durable_when_the_201_arrives(api: Api) -> None:
    response = api.post(JOBS, json=spec_body(name="durable"))
    assert response.status_code == 201, response.text
    other = Database(api.rt.db.url)  # another process's view: committed data only
    try:
        with other.read() as session:
            row = get_job(session, response.json()["id"])
            assert (row.name, row.status.value) == ("durable", "pending")
    finally:
        other.dispose()


def test_a_repeated_idempotency_key_with_the_same_spec_is_the_same_job(api: Api) -> None:
    key = {"Idempotency-Key": "submit-0001"}
    first = api.post(JOBS, json=spec_body(gpus=1, name="once"), headers=key)
    assert first.status_code == 201, first.text
    after_first = api.counts()
    again = api.post(JOBS, json=spec_body(gpus=1, name="once"), headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    # the same spec with its defaults spelled out is the same spec
    spelled = spec_body(gpus=1, name="once", priority=0, queue="default", max_retries=0)
    spelled_out = api.post(JOBS, json=spelled, headers=key)
    assert (spelled_out.status_code, spelled_out.json()["id"]) == (200, first.json()["id"])
    assert api.counts() == after_first  # no second job, no second event
    other = api.post(JOBS, json=spec_body(gpus=1, name="once"), headers={"Idempotency-Key": "k2"})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


def test_a_repeated_idempotency_key_with_another_spec_is_a_conflict(api: Api) -> None:
    key = {"Idempotency-Key": "submit-0002"}
    first = api.post(JOBS, json=spec_body(gpus=1), headers=key)
    assert first.status_code == 201
    before = api.counts()
    response = api.post(JOBS, json=spec_body(gpus=2), headers=key)
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("conflict", "idempotency_key")
    assert str(first.json()["id"]) in error["message"]
    assert api.counts() == before


def test_concurrent_submits_with_one_key_make_one_job(api: Api) -> None:
    key = {"Idempotency-Key": "submit-race"}

    def submit(_: int) -> tuple[int, int]:
        response = api.post(JOBS, json=spec_body(name="race"), headers=key)
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(submit, range(16)))
    assert sorted(code for code, _ in results) == [200] * 15 + [201]
    assert len({job_id for _, job_id in results}) == 1
    assert api.counts()["jobs"] == 1
