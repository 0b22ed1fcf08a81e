"""Orgs and type quotas over HTTP: what a queue shows, and bad input refused by field.

(Fair-share queues; see also ``tests/integration/test_fair_share.py``.)
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import node_facts
from tests.integration.api.harness import JOBS, QUEUES, Api, spec_body


def _orgs(api: Api) -> None:
    api.ok("POST", QUEUES, 201, json={"name": "ml", "guaranteed_gpus": 4})
    api.ok("POST", QUEUES, 201, json={"name": "vision", "parent": "ml"})


def test_a_queue_shows_its_org_quotas_share_and_usage(api: Api) -> None:
    _orgs(api)
    quotas = [{"gpu_type": "A100-80GB", "guaranteed_gpus": 1, "max_gpus": 2}]
    audio = api.ok(
        "POST", QUEUES, 201, json={"name": "audio", "parent": "ml", "type_quotas": quotas}
    )
    assert (audio["parent"], audio["type_quotas"]) == ("ml", quotas)
    api.sync(node_facts("n1", 4))
    api.submit(gpus=2, queue="vision")
    shown = {q["name"]: q for q in api.ok("GET", QUEUES)["queues"]}
    vision, ml = shown["vision"], shown["ml"]
    assert vision["fair_share_gpus"] == pytest.approx(2.0)  # its demand: the GPUs are free
    assert (vision["pending"], ml["pending"]) == (1, 1)  # an org counts its queues' jobs
    assert (vision["allocated_gpus"], vision["borrowed_gpus"]) == (0, 0)
    assert vision["usage_gpu_hours"] == 0.0

    api.cycle()
    vision = api.ok("GET", f"{QUEUES}/vision")
    assert (vision["allocated_gpus"], vision["borrowed_gpus"]) == (2, 2)  # no guarantee
    assert api.ok("GET", f"{QUEUES}/ml")["borrowed_gpus"] == 0  # 2 of its guarantee of 4

    moved = api.ok("PATCH", f"{QUEUES}/audio", json={"parent": None, "type_quotas": None})
    assert (moved["parent"], moved["type_quotas"]) == (None, [])


BAD: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("POST", QUEUES, "parent", {"name": "x", "parent": "nope"}, "does not exist"),
    ("POST", QUEUES, "parent", {"name": "x", "parent": "vision"}, "one level"),
    ("POST", QUEUES, "parent", {"name": "x", "parent": "x"}, "its own parent"),
    ("POST", QUEUES, "parent", {"name": "x", "parent": "default"}, "holds no jobs"),
    (
        "POST",
        QUEUES,
        "type_quotas.0.guaranteed_gpus",
        {"name": "x", "type_quotas": [{"gpu_type": "L4", "guaranteed_gpus": -1}]},
        "greater than or equal to 0",
    ),
    (
        "POST",
        QUEUES,
        "type_quotas.0.max_gpus",
        {"name": "x", "type_quotas": [{"gpu_type": "L4", "max_gpus": -2}]},
        "greater than or equal to 0",
    ),
    (
        "POST",
        QUEUES,
        "type_quotas",
        {"name": "x", "type_quotas": [{"gpu_type": "L4"}, {"gpu_type": "l4"}]},
        "given twice",
    ),
    (
        "POST",
        QUEUES,
        "type_quotas.0",
        {"name": "x", "type_quotas": [{"gpu_type": "L4", "guaranteed_gpus": 3, "max_gpus": 1}]},
        "below guaranteed_gpus",
    ),
    ("PATCH", f"{QUEUES}/ml", "parent", {"parent": "default"}, "cannot get a parent"),
    ("PATCH", f"{QUEUES}/vision", "parent", {"parent": "nope"}, "does not exist"),
    (
        "PATCH",
        f"{QUEUES}/vision",
        "type_quotas",
        {"type_quotas": [{"gpu_type": "L4"}, {"gpu_type": "L4"}]},
        "given twice",
    ),
    ("POST", JOBS, "queue", spec_body(queue="ml"), "takes no jobs"),
]


def test_bad_org_and_quota_input_is_a_4xx_with_field_and_reason(api: Api) -> None:
    _orgs(api)
    api.submit()  # ``default`` holds a job: it cannot become an org
    before = (api.counts(), api.ok("GET", QUEUES))
    for method, path, field, body, reason in BAD:
        response = api.request(method, path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_request", field), (body, error)
        assert reason in error["message"], error
        assert "\n" not in error["message"]
    assert (api.counts(), api.ok("GET", QUEUES)) == before  # nothing changed
