"""Secret env values: stored for the agent, never shown.

A job submitted with ``secret_env`` gets the values in its run instruction (the sync
reply to the agent that runs it) and nowhere else: every read endpoint shows the names
with ``***``, refusals name the variable but not its value, and the server logs
nothing of it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from scheduler.domain.spec import SECRET_MASK
from scheduler.store.jobs import spec_digest
from scheduler.store.models import JobRow
from tests.factories import exited, job_spec, node_facts, report
from tests.integration.api.harness import JOBS, Api, spec_body

SECRET = "hunter2-do-not-show"
OTHER_SECRET = "another-hidden-value"
NODE = node_facts("node-a", 2)


def secret_spec(**fields: Any) -> dict[str, Any]:
    return spec_body(env={"PLAIN": "shown"}, secret_env={"MY_SECRET": SECRET}, **fields)


def every_read(api: Api, job_id: int) -> dict[str, str]:
    """The text of every endpoint that shows a job, its events or the calls made."""
    paths = {
        "show": f"{JOBS}/{job_id}",
        "list": JOBS,
        "list by name": f"{JOBS}?name=secretive",
        "history export": "/api/v1/history/jobs",
        "audit": "/api/v1/audit",
        "logs": f"{JOBS}/{job_id}/logs",
    }
    texts = {}
    for name, path in paths.items():
        response = api.get(path)
        assert response.status_code == 200, (name, response.text)
        texts[name] = response.text
    return texts


def run_to_the_end(api: Api, job_id: int) -> list[dict[str, str]]:
    """Register the node, place the job, start and end it; the launches' envs."""
    api.sync(NODE)
    api.cycle()
    launches = api.sync(NODE).run
    attempt_id = launches[0].attempt_id
    api.sync(NODE, report(attempt_id))
    api.sync(NODE, exited(attempt_id, 0))
    assert api.job(job_id)["status"] == "succeeded"
    return [launch.env for launch in launches]


def test_no_read_shows_the_value_and_the_agent_gets_it(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    submitted = api.ok("POST", JOBS, 201, json=secret_spec(name="secretive"))
    job_id = submitted["id"]
    assert submitted["spec"]["secret_env"] == {"MY_SECRET": SECRET_MASK}
    assert submitted["spec"]["env"] == {"PLAIN": "shown"}

    envs = run_to_the_end(api, job_id)
    assert [(env["MY_SECRET"], env["PLAIN"]) for env in envs] == [(SECRET, "shown")]

    texts = every_read(api, job_id)
    assert all(SECRET not in text for text in texts.values()), texts
    shown = api.job(job_id)
    assert shown["spec"]["secret_env"] == {"MY_SECRET": SECRET_MASK}
    assert shown["events"][0]["kind"] == "submitted"  # the events are part of the show
    assert any(j["id"] == job_id for j in api.get("/api/v1/history/jobs").json()["jobs"])
    assert "MY_SECRET" not in caplog.text and SECRET not in caplog.text


def test_the_value_is_stored_for_the_agent(api: Api) -> None:
    job_id = api.ok("POST", JOBS, 201, json=secret_spec())["id"]
    with api.rt.db.read() as session:
        row = session.get(JobRow, job_id)
        assert row is not None
        assert row.spec["secret_env"] == {"MY_SECRET": SECRET}
        assert SECRET not in row.spec_digest


def test_batch_and_array_views_hide_the_value_too(api: Api) -> None:
    batch = api.ok("POST", f"{JOBS}/batch", 201, json={"jobs": [secret_spec(), secret_spec()]})
    array = api.ok("POST", f"{JOBS}/array", 201, json={"spec": secret_spec(), "indices": "0-1"})
    for job_id in batch["job_ids"] + array["job_ids"]:
        assert api.job(job_id)["spec"]["secret_env"] == {"MY_SECRET": SECRET_MASK}
    assert SECRET not in api.get(JOBS).text


def test_an_idempotent_retry_tells_a_changed_secret_apart(api: Api) -> None:
    key = {"Idempotency-Key": "upload-1"}
    first = api.ok("POST", JOBS, 201, json=secret_spec(), headers=key)
    again = api.ok("POST", JOBS, 200, json=secret_spec(), headers=key)
    assert again["id"] == first["id"]
    assert again["spec"]["secret_env"] == {"MY_SECRET": SECRET_MASK}
    changed = spec_body(env={"PLAIN": "shown"}, secret_env={"MY_SECRET": OTHER_SECRET})
    response = api.post(JOBS, json=changed, headers=key)
    assert response.status_code == 409, response.text
    assert SECRET not in response.text and OTHER_SECRET not in response.text


def test_the_digest_changes_with_the_secret_alone() -> None:
    one = job_spec(secret_env={"MY_SECRET": SECRET})
    other = job_spec(secret_env={"MY_SECRET": OTHER_SECRET})
    assert spec_digest(one) != spec_digest(other)
    assert spec_digest(one) == spec_digest(job_spec(secret_env={"MY_SECRET": SECRET}))


@pytest.mark.parametrize(
    ("secret_env", "env", "field", "reason"),
    [
        ({"1BAD": SECRET}, {}, "secret_env", "not an environment variable name"),
        ({"CORRAL_JOB_ID": SECRET}, {}, "secret_env", "is set by corral"),
        ({"MY_SECRET": SECRET + "\x00"}, {}, "secret_env", "NUL"),
        ({"MY_SECRET": SECRET}, {"MY_SECRET": "x"}, None, "both env and secret_env"),
        ({"MY_SECRET": 12345}, {}, "secret_env.MY_SECRET", "valid string"),
    ],
)
def test_a_refusal_names_the_variable_never_the_value(
    api: Api, secret_env: dict[str, Any], env: dict[str, str], field: str | None, reason: str
) -> None:
    before = api.counts()
    body = {"command": ["true"], "env": env, "secret_env": secret_env}
    response = api.post(JOBS, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["field"], reason in error["message"]) == (field, True), error
    assert SECRET not in response.text and "12345" not in response.text
    assert api.counts() == before
