"""``GET /api/v1/usage``: the window and grouping reach the accounting; bad input is a
422 naming the field. (The GPU-hour arithmetic is tested in store/test_accounting.py.)"""

from __future__ import annotations

import pytest

from tests.factories import node_facts, report
from tests.integration.api.harness import Api

USAGE = "/api/v1/usage"
A100 = node_facts("a100", 4)


def test_usage_groups_by_queue_and_by_the_submitting_token(api: Api) -> None:
    api.sync(A100)
    job_id = api.submit(gpus=2)["id"]
    api.cycle()
    (launch,) = api.sync(A100).run
    api.sync(A100, report(launch.attempt_id))
    by_queue = api.ok("GET", USAGE, params={"by": "queue", "since": "1h"})
    assert by_queue["by"] == "queue"
    [entry] = by_queue["entries"]
    assert (entry["key"], entry["jobs_run"], entry["jobs_failed"]) == ("default", 1, 0)
    assert 0 < entry["gpu_hours_allocated"] < 2 / 60  # 2 GPUs for less than a minute
    submitter = api.job(job_id)["submitted_by"]
    assert submitter
    by_user = api.ok("GET", USAGE, params={"by": "user", "since": "1h"})
    assert [e["key"] for e in by_user["entries"]] == [submitter]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "last week"}, "since"),
        ({"since": "2020-01-01T00:00:00"}, "since"),  # no UTC offset
        ({"since": "2999-01-01T00:00:00Z"}, "since"),
        ({"by": "team"}, "by"),
    ],
)
def test_bad_usage_queries_are_422_naming_the_field(
    api: Api, params: dict[str, str], field: str
) -> None:
    response = api.get(USAGE, params=params)
    assert response.status_code == 422, response.text
    assert field in (response.json()["error"].get("field") or "")
