"""``POST /api/v1/jobs/batch`` and ``/jobs/array``: all or nothing in one transaction, a
bad item named by its index, idempotent by key; an array's jobs learn their index from
the env the agent gets, and ``/jobs/array/{id}/cancel`` ends the array."""

from __future__ import annotations

from typing import Any

import pytest

from scheduler.domain.sync import AttemptState
from tests.factories import node_facts, report
from tests.integration.api.harness import JOBS, QUEUES, Api, spec_body

BATCH = f"{JOBS}/batch"
ARRAY = f"{JOBS}/array"


def batch_body(*specs: dict[str, Any]) -> dict[str, Any]:
    return {"jobs": list(specs)}


def error_of(api: Api, path: str, body: Any, status: int = 422, **kwargs: Any) -> dict[str, Any]:
    response = api.post(path, json=body, **kwargs)
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_a_batch_stores_every_job_pending_in_request_order(api: Api) -> None:
    names = ["a", "b", "c"]
    result = api.ok("POST", BATCH, 201, json=batch_body(*(spec_body(name=n) for n in names)))
    ids = result["job_ids"]
    assert (len(ids), result["created"], result["array_id"]) == (3, True, None)
    jobs = [api.job(job_id) for job_id in ids]
    assert [(j["name"], j["status"]) for j in jobs] == [(n, "pending") for n in names]
    assert api.counts()["job_events"] == 3  # one "submitted" event each


@pytest.mark.parametrize(
    ("bad_item", "field"),
    [
        ({"resources": {"gpus": -1}}, "jobs.2.resources.gpus"),
        ({"env": {"CORRAL_JOB_ID": "7"}}, "jobs.2.env"),
        ({"queue": "nope"}, "jobs.2.queue"),
    ],
)
def test_a_bad_item_refuses_the_whole_batch_and_names_it(
    api: Api, bad_item: dict[str, Any], field: str
) -> None:
    before = api.counts()
    body = batch_body(spec_body(), spec_body(), {**spec_body(), **bad_item}, spec_body())
    error = error_of(api, BATCH, body)
    assert error["field"] == field
    assert error["message"].startswith(f"{field}: ")
    assert api.counts() == before


def test_an_item_no_node_can_ever_hold_refuses_the_batch(api: Api) -> None:
    api.sync(node_facts("n1", 2))
    before = api.counts()
    error = error_of(api, BATCH, batch_body(spec_body(1), spec_body(4)))
    assert (error["field"], error["code"]) == ("jobs.1.resources", "unsatisfiable")
    assert api.counts() == before


def test_an_item_for_an_org_refuses_the_batch(api: Api) -> None:
    api.ok("POST", QUEUES, 201, json={"name": "org"})
    api.ok("POST", QUEUES, 201, json={"name": "team", "parent": "org"})
    before = api.counts()
    error = error_of(api, BATCH, batch_body(spec_body(queue="team"), spec_body(queue="org")))
    assert error["field"] == "jobs.1.queue"
    assert api.counts() == before


def test_an_empty_batch_is_refused(api: Api) -> None:
    assert error_of(api, BATCH, batch_body())["field"] == "jobs"


def test_a_retried_batch_with_its_key_stores_nothing_more(api: Api) -> None:
    body = batch_body(spec_body(name="x"), spec_body(name="y"))
    key = {"Idempotency-Key": "nightly-42"}
    first = api.ok("POST", BATCH, 201, json=body, headers=key)
    counts = api.counts()
    again = api.ok("POST", BATCH, 200, json=body, headers=key)
    assert (again["job_ids"], again["created"]) == (first["job_ids"], False)
    assert api.counts() == counts
    other = batch_body(spec_body(name="x"), spec_body(name="z"))
    assert error_of(api, BATCH, other, 409, headers=key)["field"] == "idempotency_key"
    assert api.counts() == counts


def test_an_array_makes_one_job_per_index_sharing_the_first_jobs_id(api: Api) -> None:
    result = api.ok("POST", ARRAY, 201, json={"spec": spec_body(name="sweep"), "indices": "0-9:3"})
    ids = result["job_ids"]
    assert result["array_id"] == ids[0]
    listed = api.ok("GET", JOBS, params={"array_id": ids[0]})["jobs"]
    assert sorted((j["id"], j["array_id"], j["array_index"]) for j in listed) == [
        (job_id, ids[0], index) for job_id, index in zip(ids, [0, 3, 6, 9], strict=True)
    ]
    other = api.submit()  # not of the array: not listed with it
    assert other["array_id"] is None
    assert all(j["id"] != other["id"] for j in listed)


@pytest.mark.parametrize("indices", ["9-1", "a-b", "1,1", "", "0-20000"])
def test_bad_array_indices_are_refused(api: Api, indices: str) -> None:
    before = api.counts()
    error = error_of(api, ARRAY, {"spec": spec_body(), "indices": indices})
    assert error["field"] == "indices"
    assert api.counts() == before


def test_each_array_job_is_told_its_index_and_array(api: Api) -> None:
    facts = node_facts("n1", 4)
    api.sync(facts)
    result = api.ok("POST", ARRAY, 201, json={"spec": spec_body(), "indices": "1,3,5"})
    assert api.cycle().placed == 3
    launches = api.sync(facts).run
    told = sorted(
        (int(launch.env["CORRAL_ARRAY_INDEX"]), launch.env["CORRAL_ARRAY_ID"], launch.job_id)
        for launch in launches
    )
    array_id = str(result["array_id"])
    assert told == [(i, array_id, j) for i, j in zip([1, 3, 5], result["job_ids"], strict=True)]


def test_cancelling_an_array_ends_pending_jobs_and_stops_running_ones(api: Api) -> None:
    facts = node_facts("n1", 1)
    api.sync(facts)
    result = api.ok("POST", ARRAY, 201, json={"spec": spec_body(), "indices": "0-2"})
    api.cycle()
    (launch,) = api.sync(facts).run
    api.sync(facts, report(launch.attempt_id, AttemptState.RUNNING))
    unrelated = api.submit()["id"]
    cancelled = api.ok("POST", f"{ARRAY}/{result['array_id']}/cancel")
    assert sorted(cancelled["job_ids"]) == sorted(result["job_ids"])
    statuses = {job_id: api.job(job_id)["status"] for job_id in result["job_ids"]}
    assert statuses == {
        job_id: "stopping" if job_id == launch.job_id else "cancelled"
        for job_id in result["job_ids"]
    }
    assert api.job(unrelated)["status"] == "pending"
    assert [s.attempt_id for s in api.sync(facts, report(launch.attempt_id)).stop] == [
        launch.attempt_id
    ]


def test_cancelling_an_unknown_array_is_404(api: Api) -> None:
    assert error_of(api, f"{ARRAY}/999/cancel", None, 404)["field"] == "array_id"
