"""Users, tokens, the audit log and the submit rate limit, over the API (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from scheduler.api.app import create_app
from scheduler.runtime import Runtime
from scheduler.services.bootstrap import prepare
from scheduler.settings import ServerSettings
from scheduler.store.db import Database
from tests.integration.api.harness import JOBS, Api, spec_body

V1 = "/api/v1"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _user_with_token(api: Api, name: str, queues: list[str], role: str = "user") -> str:
    api.ok("POST", f"{V1}/users", 201, json={"name": name, "role": role, "queues": queues})
    created = api.ok("POST", f"{V1}/tokens", 201, json={"user": name})
    assert created["token"].startswith("crl_") and created["user"] == name
    return str(created["token"])


def test_a_user_sees_and_lists_only_its_own_jobs(api: Api) -> None:
    token = _user_with_token(api, "ann", ["default"])
    mine = api.ok("POST", JOBS, 201, json=spec_body(), headers=_bearer(token))
    theirs = api.submit()
    assert mine["submitted_by"] == "ann"
    listed = api.http.get(JOBS, headers=_bearer(token)).json()["jobs"]
    assert [job["id"] for job in listed] == [mine["id"]]
    everyone = {job["id"] for job in api.ok("GET", JOBS)["jobs"]}
    assert everyone == {mine["id"], theirs["id"]}


def test_revocation_and_role_changes_take_effect_at_once(api: Api) -> None:
    token = _user_with_token(api, "bob", [])
    assert (
        api.http.post(f"{V1}/queues", json={"name": "q1"}, headers=_bearer(token)).status_code
        == 403
    )
    api.ok("PATCH", f"{V1}/users/bob", json={"role": "operator"})
    assert (
        api.http.post(f"{V1}/queues", json={"name": "q1"}, headers=_bearer(token)).status_code
        == 201
    )
    token_id = api.ok("GET", f"{V1}/tokens?user=bob")["tokens"][0]["id"]
    revoked = api.ok("POST", f"{V1}/tokens/{token_id}/revoke")
    assert revoked["revoked_at"] is not None
    assert api.http.get(JOBS, headers=_bearer(token)).status_code == 401


def test_listed_tokens_never_carry_a_secret(api: Api) -> None:
    token = _user_with_token(api, "cat", [])
    listing = api.request("GET", f"{V1}/tokens").text
    assert token not in listing and "crl_" not in listing
    created = api.ok("POST", f"{V1}/tokens", 201, json={"node": "n7", "expires_in_s": "1d"})
    assert created["role"] == "agent" and created["node"] == "n7"
    assert created["expires_at"] is not None


def test_deleting_a_user_stops_its_tokens(api: Api) -> None:
    token = _user_with_token(api, "dan", [])
    api.ok("DELETE", f"{V1}/users/dan")
    assert api.http.get(JOBS, headers=_bearer(token)).status_code == 401
    assert api.request("GET", f"{V1}/users/dan").status_code == 404


def test_the_audit_log_records_allowed_and_refused_calls(api: Api) -> None:
    token = _user_with_token(api, "eve", [])
    api.http.post(f"{V1}/nodes/n1/drain", json={}, headers=_bearer(token))
    api.http.post(JOBS, json=spec_body())  # no token
    events = api.ok("GET", f"{V1}/audit?since=1h")["events"]
    seen = {(e["who"], e["method"], e["path"], e["status"]) for e in events}
    assert ("admin", "POST", f"{V1}/users", 201) in seen
    assert ("eve", "POST", f"{V1}/nodes/n1/drain", 403) in seen
    assert (None, "POST", JOBS, 401) in seen
    by_eve = api.ok("GET", f"{V1}/audit?user=eve")["events"]
    assert [e["target"] for e in by_eve] == ["name=n1"]


def test_submits_over_the_rate_are_refused_with_retry_after(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    settings = ServerSettings(data_dir=tmp_path, database_url=url, submit_rate="2/h")
    rt = Runtime(db=Database(url), settings=settings)
    token = prepare(rt).read_text().strip()
    try:
        with TestClient(create_app(rt, run_loops_in_app=False)) as http:
            headers = _bearer(token)
            batch = {"jobs": [spec_body(), spec_body()]}
            assert http.post(f"{JOBS}/batch", json=batch, headers=headers).status_code == 201
            refused = http.post(JOBS, json=spec_body(), headers=headers)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 1700 <= int(refused.headers["Retry-After"]) <= 1800  # one job per 30 min
            too_big = http.post(f"{JOBS}/batch", json={"jobs": [spec_body()] * 3}, headers=headers)
            assert too_big.status_code == 422
            assert len(http.get(JOBS, headers=headers).json()["jobs"]) == 2
    finally:
        rt.db.dispose()
