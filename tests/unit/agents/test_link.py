"""Link: one POST per sync; errors sorted into LinkError (retry) and AuthError (fatal)."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from agents.link import AuthError, Link, LinkError
from scheduler.domain.sync import AttemptReport, AttemptState, NodeFacts, SyncReply, SyncRequest

REQUEST = SyncRequest(
    node=NodeFacts(name="node-1", hostname="host-1", cpus=8, memory_total_mib=1024),
    attempts=[
        AttemptReport(attempt_id=5, state=AttemptState.RUNNING, log_offset=3, log_data=b"\x00hi")
    ],
    wait_s=12.0,
)


def sync_with(handler: httpx.MockTransport, timeout_s: float = 4.0) -> SyncReply:
    async def go() -> SyncReply:
        link = Link("http://corral.test:8080/", "tok", timeout_s=timeout_s, transport=handler)
        try:
            return await link.sync(REQUEST)
        finally:
            await link.aclose()

    return asyncio.run(go())


def test_posts_the_request_and_returns_the_reply() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"node_state": "up", "log_acks": {"5": 6}})

    reply = sync_with(httpx.MockTransport(handler))

    assert reply == SyncReply(node_state="up", log_acks={5: 6})
    (request,) = seen
    assert (request.method, str(request.url)) == (
        "POST",
        "http://corral.test:8080/api/v1/agent/sync",
    )
    assert request.headers["authorization"] == "Bearer tok"
    body = json.loads(request.content)
    assert body["wait_s"] == 12.0
    assert base64.b64decode(body["attempts"][0]["log_data"]) == b"\x00hi"
    assert SyncRequest.model_validate_json(request.content) == REQUEST
    timeout = request.extensions["timeout"]
    assert (timeout["connect"], timeout["read"]) == (4.0, 16.0)  # read: wait_s + timeout_s


@pytest.mark.parametrize("status", [401, 403])
def test_auth_refusals_are_fatal(status: int) -> None:
    transport = httpx.MockTransport(
        lambda _: httpx.Response(status, json={"error": {"message": "unknown token"}})
    )
    with pytest.raises(AuthError, match="unknown token"):
        sync_with(transport)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (httpx.Response(500, text="boom"), "HTTP 500: boom"),
        (httpx.Response(503, text=""), "HTTP 503: Service Unavailable"),
        (httpx.Response(422, json={"error": {"message": "node name taken"}}), "node name taken"),
        (httpx.Response(404, json={"detail": "Not Found"}), "HTTP 404"),
        (httpx.Response(200, json={"nonsense": True}), "unreadable sync reply"),
        (httpx.Response(200, text="<html>"), "unreadable sync reply"),
    ],
)
def test_other_failures_are_retryable(response: httpx.Response, expected: str) -> None:
    with pytest.raises(LinkError, match=expected):
        sync_with(httpx.MockTransport(lambda _: response))


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
def test_network_errors_are_retryable(error: httpx.TransportError) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(LinkError, match=f"cannot reach the server: {type(error).__name__}"):
        sync_with(httpx.MockTransport(handler))
