"""Every endpoint but ``/healthz`` refuses a request without a valid token, with the one
error shape, and the refused request changes nothing (docs/api.md, "unauthorized")."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import update

from scheduler.store import tokens
from scheduler.store.models import TokenRow, utcnow
from tests.factories import node_facts
from tests.integration.api.harness import JOBS, NODES, QUEUES, SYNC, Api, spec_body, sync_body

# the dashboard page is static and holds no data: it asks for a token and calls the API
UNGUARDED = {"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc", "/ui", "/ui/"}
NODE = "n1"

# A valid body for each route that takes one: were the token not checked, these would
# change something, which the test would see.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", JOBS): spec_body(),
    ("POST", QUEUES): {"name": "team-a"},
    ("PATCH", f"{QUEUES}/{{name}}"): {"weight": 5},
    ("POST", f"{NODES}/{{name}}/drain"): {"reason": "maintenance"},
    ("POST", SYNC): sync_body(node_facts("intruder", 8)),
}


def _stored_token(api: Api, **fields: Any) -> str:
    """A real token whose row then gets ``fields`` (revoked_at, expires_at)."""
    with api.rt.db.write() as session:
        name = "someone-" + "-".join(fields)
        token = tokens.create_token(session, name, "admin", utcnow())
        session.execute(
            update(TokenRow).where(TokenRow.digest == tokens.digest(token)).values(**fields)
        )
    return token


CREDENTIALS: dict[str, Callable[[Api], dict[str, str]]] = {
    "none": lambda api: {},
    "unknown token": lambda api: {"Authorization": "Bearer crl_not-a-token"},
    "empty bearer": lambda api: {"Authorization": "Bearer "},
    "another scheme": lambda api: {"Authorization": f"Basic {api.token}"},
    "bare token": lambda api: {"Authorization": api.token},
    "revoked token": lambda api: {
        "Authorization": f"Bearer {_stored_token(api, revoked_at=utcnow())}"
    },
    "expired token": lambda api: {
        "Authorization": f"Bearer {_stored_token(api, expires_at=utcnow() - timedelta(seconds=1))}"
    },
}


def api_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route the app serves, included routers too."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # a FastAPI that keeps included routes flat in app.routes
        contexts: Any = app.routes
    else:
        contexts = iter_route_contexts(app.routes)
    for route in contexts:
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                yield method, route.path


def _world(api: Api) -> tuple[int, dict[str, Any]]:
    """A node, a pending job; returns the job id and what the routes could change."""
    api.sync(node_facts(NODE, 4))
    job_id = api.submit()["id"]
    return job_id, _state(api, job_id)


def _state(api: Api, job_id: int) -> dict[str, Any]:
    return {
        "counts": api.counts(),
        "job": api.job(job_id)["status"],
        "queue": api.ok("GET", f"{QUEUES}/default"),
        "node": api.ok("GET", f"{NODES}/{NODE}")["state"],
    }


def _assert_unauthorized(method: str, path: str, response: Any) -> None:
    where = f"{method} {path}"
    assert response.status_code == 401, (where, response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == "unauthorized", (where, error)
    assert error["message"], where
    assert response.headers.get("WWW-Authenticate") == "Bearer", where


def guarded_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every route but the unguarded ones; checked against the OpenAPI document, so a
    route the walk missed would fail here rather than go untested."""
    routes = list(api_routes(app))
    assert set(app.openapi()["paths"]) <= {path for _, path in routes}
    return [(method, path) for method, path in routes if path not in UNGUARDED]


def test_every_endpoint_refuses_a_request_without_a_valid_token(api: Api) -> None:
    job_id, before = _world(api)
    routes = guarded_routes(api.app)
    assert len(routes) >= 13
    failures = []
    for kind, credentials in CREDENTIALS.items():
        headers = credentials(api)
        for method, template in routes:
            name = NODE if template.startswith(NODES) else "default"
            path = template.format(job_id=job_id, name=name, array_id=job_id, token_id=1)
            body = BODIES.get((method, template), {} if method in ("POST", "PATCH") else None)
            response = api.http.request(method, path, json=body, headers=headers)
            try:
                _assert_unauthorized(method, path, response)
            except AssertionError as err:
                failures.append(f"{kind}: {err}")
    assert not failures, "\n".join(failures)
    assert _state(api, job_id) == before


def test_a_request_without_a_token_is_refused_before_its_body_is_read(api: Api) -> None:
    """Malformed JSON from an unauthenticated client is a 401, not a validation reply."""
    job_id, _ = _world(api)
    with_body = [(m, p) for m, p in guarded_routes(api.app) if m in ("POST", "PATCH")]
    assert (("POST", JOBS) in with_body) and (("POST", SYNC) in with_body)
    for method, template in with_body:
        path = template.format(job_id=job_id, name="default", array_id=job_id, token_id=1)
        for headers in ({}, {"Authorization": "Bearer crl_not-a-token"}):
            response = api.http.request(
                method,
                path,
                content=b'{"command": [',
                headers={**headers, "Content-Type": "application/json"},
            )
            _assert_unauthorized(method, path, response)


def test_healthz_answers_without_a_token(api: Api) -> None:
    response = api.http.get("/healthz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == api.rt.db.backend
    assert body["version"]


def test_the_admin_token_is_accepted(api: Api) -> None:
    assert api.get(JOBS).status_code == 200
    assert api.get(JOBS, headers={"Authorization": f"bearer   {api.token}  "}).status_code == 200
