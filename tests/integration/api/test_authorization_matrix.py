"""Every endpoint, every role, own and other's resources: the status each caller gets.

The table below is the contract of docs/security.md. Each cell runs on a fresh target
(a new job, queue, user or token made for it), so an allowed call that changes
something does not disturb the next cell; a refused call must change nothing. The
table must name every route the app serves (checked against the route walk of
test_auth.py), so a new endpoint cannot go unchecked.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from scheduler.services import batch
from scheduler.services import jobs as job_service
from scheduler.store import tokens, users
from scheduler.store.models import MembershipRow, TokenRow, UserRow, utcnow
from tests.factories import job_spec, node_facts
from tests.integration.api.harness import Api, spec_body, sync_body
from tests.integration.api.test_auth import guarded_routes

V1 = "/api/v1"
CALLERS = (
    "admin",
    "operator",
    "member",
    "outsider",
    "agent-a",
    "agent-b",
    "none",
    "revoked",
    "expired",
)
TEAM = "team-a"
NODE_A, NODE_B = "node-a", "node-b"
_fresh = itertools.count(1)


@dataclass
class World:
    api: Api
    headers: dict[str, dict[str, str]]


def _token(api: Api, user: str | None, role: str, node: str | None = None, **fields: Any) -> str:
    with api.rt.db.write() as session:
        user_id = users.get_user(session, user).id if user else None
        name = f"{user or node}-{next(_fresh)}"
        secret = tokens.create_token(session, name, role, utcnow(), user_id=user_id, node_name=node)
        row = tokens.verify(session, secret, utcnow())
        assert row is not None
        for key, value in fields.items():
            setattr(row, key, value)
    return secret


@pytest.fixture
def world(api: Api) -> World:
    api.ok("POST", f"{V1}/queues", 201, json={"name": TEAM})
    api.sync(node_facts(NODE_A, 4))
    api.sync(node_facts(NODE_B, 4))
    with api.rt.db.write() as session:
        users.create_user(session, "ops", "operator", [], utcnow())
        users.create_user(session, "member", "user", [TEAM], utcnow())
        users.create_user(session, "outsider", "user", [], utcnow())
    past = utcnow() - timedelta(seconds=1)
    secrets = {
        "admin": api.token,
        "operator": _token(api, "ops", "operator"),
        "member": _token(api, "member", "user"),
        "outsider": _token(api, "outsider", "user"),
        "agent-a": _token(api, None, "agent", NODE_A),
        "agent-b": _token(api, None, "agent", NODE_B),
        "revoked": _token(api, "member", "user", revoked_at=past),
        "expired": _token(api, "member", "user", expires_at=past),
    }
    headers = {name: {"Authorization": f"Bearer {secret}"} for name, secret in secrets.items()}
    return World(api=api, headers={**headers, "none": {}})


# -- targets: each makes what its cell acts on and returns (path, json body) ----------


def _job(world: World, owner: str) -> int:
    """A new pending job in ``team-a`` submitted by ``owner`` (as the service would)."""
    spec = job_spec(1, 1, queue=TEAM)
    view, _ = job_service.submit(world.api.rt, spec, submitted_by=owner)
    return view.id


def _array(world: World, owner: str) -> int:
    spec = job_spec(1, 1, queue=TEAM)
    result = batch.submit_array(world.api.rt, spec, [0, 1], submitted_by=owner)
    assert result.array_id is not None
    return result.array_id


def _new_user(world: World) -> str:
    name = f"temp-{next(_fresh)}"
    with world.api.rt.db.write() as session:
        users.create_user(session, name, "user", [], utcnow())
    return name


def _new_token_id(world: World) -> int:
    _token(world.api, "member", "user")
    with world.api.rt.db.read() as session:
        return int(session.scalars(select(func.max(TokenRow.id))).one())


Target = Callable[[World], tuple[str, Any]]
OWN, OTHER = "member", "admin"  # whose job "own" and "other" are, seen by the member

J = f"{V1}/jobs"
ALL_PEOPLE = (200, 200, 200, 200, 403, 403, 401, 401, 401)
STAFF_ONLY = (200, 200, 403, 403, 403, 403, 401, 401, 401)
ADMIN_ONLY = (200, 403, 403, 403, 403, 403, 401, 401, 401)


def _created(codes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(201 if code == 200 else code for code in codes)


def _sync_as(node: str) -> Target:
    return lambda w: (f"{V1}/agent/sync", sync_body(node_facts(node, 4)))


# (method, route template, what, target, statuses in CALLERS order)
#   callers: admin operator member outsider agent-a agent-b none revoked expired
MATRIX: list[tuple[str, str, str, Target, tuple[int, ...]]] = [
    ("GET", J, "list", lambda w: (J, None), ALL_PEOPLE),
    ("POST", J, "to team-a", lambda w: (J, spec_body(queue=TEAM)),
     (201, 201, 201, 403, 403, 403, 401, 401, 401)),
    ("POST", f"{J}/batch", "to team-a", lambda w: (f"{J}/batch", {"jobs": [spec_body(queue=TEAM)]}),
     (201, 201, 201, 403, 403, 403, 401, 401, 401)),
    ("POST", f"{J}/array", "to team-a",
     lambda w: (f"{J}/array", {"spec": spec_body(queue=TEAM), "indices": [0, 1]}),
     (201, 201, 201, 403, 403, 403, 401, 401, 401)),
    ("GET", f"{J}/{{job_id}}", "own", lambda w: (f"{J}/{_job(w, OWN)}", None),
     (200, 200, 200, 403, 403, 403, 401, 401, 401)),
    ("GET", f"{J}/{{job_id}}", "other's", lambda w: (f"{J}/{_job(w, OTHER)}", None), STAFF_ONLY),
    ("POST", f"{J}/{{job_id}}/cancel", "own", lambda w: (f"{J}/{_job(w, OWN)}/cancel", None),
     (200, 200, 200, 403, 403, 403, 401, 401, 401)),
    ("POST", f"{J}/{{job_id}}/cancel", "other's",
     lambda w: (f"{J}/{_job(w, OTHER)}/cancel", None), STAFF_ONLY),
    ("GET", f"{J}/{{job_id}}/logs", "own", lambda w: (f"{J}/{_job(w, OWN)}/logs", None),
     (200, 200, 200, 403, 403, 403, 401, 401, 401)),
    ("GET", f"{J}/{{job_id}}/logs", "other's", lambda w: (f"{J}/{_job(w, OTHER)}/logs", None),
     STAFF_ONLY),
    # a pending job has no attempt yet: whoever may look is told so (404)
    ("GET", f"{J}/{{job_id}}/telemetry", "own",
     lambda w: (f"{J}/{_job(w, OWN)}/telemetry", None),
     (404, 404, 404, 403, 403, 403, 401, 401, 401)),
    ("GET", f"{J}/{{job_id}}/telemetry", "other's",
     lambda w: (f"{J}/{_job(w, OTHER)}/telemetry", None),
     (404, 404, 403, 403, 403, 403, 401, 401, 401)),
    ("POST", f"{J}/array/{{array_id}}/cancel", "own",
     lambda w: (f"{J}/array/{_array(w, OWN)}/cancel", None),
     (200, 200, 200, 403, 403, 403, 401, 401, 401)),
    ("POST", f"{J}/array/{{array_id}}/cancel", "other's",
     lambda w: (f"{J}/array/{_array(w, OTHER)}/cancel", None), STAFF_ONLY),
    ("GET", f"{V1}/queues", "list", lambda w: (f"{V1}/queues", None), ALL_PEOPLE),
    ("GET", f"{V1}/queues/{{name}}", "team-a", lambda w: (f"{V1}/queues/{TEAM}", None), ALL_PEOPLE),
    ("POST", f"{V1}/queues", "new",
     lambda w: (f"{V1}/queues", {"name": f"q-{next(_fresh)}"}), _created(STAFF_ONLY)),
    ("PATCH", f"{V1}/queues/{{name}}", "team-a",
     lambda w: (f"{V1}/queues/{TEAM}", {"weight": next(_fresh)}), STAFF_ONLY),
    ("GET", f"{V1}/nodes", "list", lambda w: (f"{V1}/nodes", None), ALL_PEOPLE),
    ("GET", f"{V1}/nodes/{{name}}", "node-a", lambda w: (f"{V1}/nodes/{NODE_A}", None), ALL_PEOPLE),
    ("POST", f"{V1}/nodes/{{name}}/drain", "node-a",
     lambda w: (f"{V1}/nodes/{NODE_A}/drain", {"reason": "test"}), STAFF_ONLY),
    ("POST", f"{V1}/nodes/{{name}}/undrain", "node-a",
     lambda w: (f"{V1}/nodes/{NODE_A}/undrain", None), STAFF_ONLY),
    ("POST", f"{V1}/agent/sync", "as node-a", _sync_as(NODE_A),
     (200, 403, 403, 403, 200, 403, 401, 401, 401)),
    ("POST", f"{V1}/agent/sync", "as node-b", _sync_as(NODE_B),
     (200, 403, 403, 403, 403, 200, 401, 401, 401)),
    ("GET", f"{V1}/usage", "by queue", lambda w: (f"{V1}/usage", None), ALL_PEOPLE),
    ("GET", "/metrics", "scrape", lambda w: ("/metrics", None), ALL_PEOPLE),
    ("GET", f"{V1}/history/jobs", "export", lambda w: (f"{V1}/history/jobs", None), STAFF_ONLY),
    ("GET", f"{V1}/users", "list", lambda w: (f"{V1}/users", None), ADMIN_ONLY),
    ("POST", f"{V1}/users", "new",
     lambda w: (f"{V1}/users", {"name": f"u-{next(_fresh)}", "queues": [TEAM]}),
     _created(ADMIN_ONLY)),
    ("GET", f"{V1}/users/{{name}}", "member", lambda w: (f"{V1}/users/member", None), ADMIN_ONLY),
    ("PATCH", f"{V1}/users/{{name}}", "another",
     lambda w: (f"{V1}/users/{_new_user(w)}", {"role": "operator"}), ADMIN_ONLY),
    ("DELETE", f"{V1}/users/{{name}}", "another",
     lambda w: (f"{V1}/users/{_new_user(w)}", None), ADMIN_ONLY),
    ("GET", f"{V1}/tokens", "list", lambda w: (f"{V1}/tokens", None), ADMIN_ONLY),
    ("POST", f"{V1}/tokens", "for member",
     lambda w: (f"{V1}/tokens", {"user": "member", "expires_in_s": "30d"}),
     _created(ADMIN_ONLY)),
    ("POST", f"{V1}/tokens/{{token_id}}/revoke", "member's",
     lambda w: (f"{V1}/tokens/{_new_token_id(w)}/revoke", None), ADMIN_ONLY),
    ("GET", f"{V1}/audit", "read", lambda w: (f"{V1}/audit", None), ADMIN_ONLY),
]  # fmt: skip


def _state(api: Api) -> dict[str, Any]:
    """Everything a refused call might have changed (the audit log aside: it records it)."""
    with api.rt.db.read() as session:
        people = sorted(tuple(r) for r in session.execute(select(UserRow.name, UserRow.role)))
        members = sorted(session.execute(select(MembershipRow.user_id, MembershipRow.queue_id)))
        keys = sorted(session.execute(select(TokenRow.id, TokenRow.role, TokenRow.revoked_at)))
    jobs = api.ok("GET", f"{J}?limit=1000")["jobs"]
    return {
        "counts": api.counts(),
        "jobs": [(job["id"], job["status"]) for job in jobs],
        "queues": api.ok("GET", f"{V1}/queues"),
        "nodes": [(n["name"], n["state"]) for n in api.ok("GET", f"{V1}/nodes")["nodes"]],
        "users": (people, members),
        "tokens": [tuple(map(str, key)) for key in keys],
    }


def test_the_matrix_names_every_route(api: Api) -> None:
    named = {(method, template) for method, template, *_ in MATRIX}
    assert named == set(guarded_routes(api.app))
    assert all(len(row[-1]) == len(CALLERS) for row in MATRIX)


@pytest.mark.parametrize("caller", CALLERS)
def test_each_caller_gets_the_status_of_its_cell(world: World, caller: str) -> None:
    api = world.api
    failures = []
    for method, template, what, target, statuses in MATRIX:
        expected = statuses[CALLERS.index(caller)]
        path, body = target(world)
        before = _state(api) if expected >= 400 else None
        response = api.http.request(method, path, json=body, headers=world.headers[caller])
        cell = f"{caller}: {method} {template} ({what})"
        if response.status_code != expected:
            failures.append(f"{cell}: {response.status_code} != {expected}: {response.text}")
        elif before is not None:
            if response.json()["error"]["code"] not in ("forbidden", "unauthorized", "not_found"):
                failures.append(f"{cell}: error {response.text}")
            if _state(api) != before:
                failures.append(f"{cell}: a refused call changed the state")
    assert not failures, "\n".join(failures)
