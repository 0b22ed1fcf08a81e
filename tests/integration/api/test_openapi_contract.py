"""The OpenAPI document tells the truth about refusals: what clients are promised.

Every 4xx a route can answer is declared with the one error body (``ErrorResponse``),
never FastAPI's default validation body, which corral does not send; the statuses the
job submit answers besides 201 are declared. The fuzz test (tests/fuzz) checks replies
against this document; these tests pin the cases it found.
"""

from __future__ import annotations

from typing import Any

from tests.integration.api.harness import JOBS, SYNC, Api, spec_body

ERROR_REF = "#/components/schemas/ErrorResponse"


def _declared(app_openapi: dict[str, Any]) -> list[tuple[str, str, str, Any]]:
    """(method, path, status, schema) of every declared 4xx reply."""
    found = []
    for path, operations in app_openapi["paths"].items():
        for method, operation in operations.items():
            for status, reply in operation.get("responses", {}).items():
                if status.startswith("4"):
                    schema = reply.get("content", {}).get("application/json", {}).get("schema")
                    found.append((method.upper(), path, status, schema))
    return found


def test_every_declared_refusal_is_the_one_error_body(api: Api) -> None:
    document = api.app.openapi()
    declared = _declared(document)
    assert any(status == "422" for _, _, status, _ in declared)
    wrong = [
        f"{method} {path} {status}: {schema}"
        for method, path, status, schema in declared
        if path.startswith("/api/") and schema != {"$ref": ERROR_REF}
    ]
    assert not wrong, "\n".join(wrong)


def test_submit_declares_the_replay_and_the_conflict_it_answers(api: Api) -> None:
    responses = api.app.openapi()["paths"][JOBS]["post"]["responses"]
    assert {"200", "201", "409", "422"} <= set(responses)
    key = {"Idempotency-Key": "run-7"}
    first = api.ok("POST", JOBS, 201, json=spec_body(), headers=key)
    replay = api.ok("POST", JOBS, 200, json=spec_body(), headers=key)
    assert replay["id"] == first["id"]
    conflict = api.request("POST", JOBS, json=spec_body(gpus=2), headers=key)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"]["field"] == "idempotency_key"


def test_a_body_that_is_not_utf8_is_a_422_after_the_token_check(api: Api) -> None:
    """Bytes FastAPI cannot decode are refused like malformed JSON, and only to a
    client with a valid token; anyone else gets the 401 first."""
    for path in (JOBS, SYNC):
        body = {"content": b"\xff\xfe{", "headers": {"Content-Type": "application/json"}}
        anonymous = api.http.post(path, **body)
        assert anonymous.status_code == 401, anonymous.text
        response = api.post(path, **body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "invalid_request"
        assert "not UTF-8" in response.json()["error"]["message"]
