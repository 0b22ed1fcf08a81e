"""The load benchmark's agent connection against a canned HTTP server on loopback: what it
sends, how it reads a reply, and when it sends a request a second time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from benchmarks.load_http import AgentConnection, BadResponse, Unanswered, plain_http_address
from scheduler.domain.sync import SyncReply

T = TypeVar("T")
REPLY = SyncReply(node_state="ready", sync_interval_s=5.0).model_dump_json().encode()


def ok(body: bytes = REPLY, extra: str = "") -> bytes:
    head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{extra}"
    return f"{head}content-length: {len(body)}\r\n\r\n".encode() + body


CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"


@dataclass
class Canned:
    """Answers each request with the next canned reply; ``None`` closes the connection
    without answering. With ``close_after``, each connection closes after one reply."""

    replies: list[bytes | None]
    close_after: bool = False
    connections: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # head, body

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.replies:
                if self.replies[0] is None:
                    self.replies.pop(0)
                    return
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # the client closed this connection
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append((head, await reader.readexactly(length)))
                writer.write(self.replies.pop(0) or b"")
                await writer.drain()
                if self.close_after:
                    return
        finally:
            writer.close()


def with_server(canned: Canned, talk: Callable[[AgentConnection], Awaitable[T]]) -> T:
    async def go() -> T:
        server = await asyncio.start_server(canned.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = AgentConnection("127.0.0.1", port, "/api/v1/agent/sync", "tok-1")
        try:
            return await talk(conn)
        finally:
            await conn.aclose()
            server.close()

    return asyncio.run(go())


def test_a_reply_is_read_by_its_length_and_the_connection_is_kept() -> None:
    canned = Canned([ok(), ok()])

    async def talk(conn: AgentConnection) -> list[tuple[int, bytes]]:
        return [await conn.post(b'{"a": 1}'), await conn.post(b"{}")]

    answers = with_server(canned, talk)
    assert [status for status, _ in answers] == [200, 200]
    assert SyncReply.model_validate_json(answers[0][1]).node_state == "ready"
    assert canned.connections == 1
    head, body = canned.requests[0]
    assert body == b'{"a": 1}'
    assert head.startswith(b"POST /api/v1/agent/sync HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer tok-1\r\n" in head
    assert b"\r\nContent-Type: application/json\r\n" in head
    assert b"\r\nContent-Length: 8\r\n" in head


def test_an_error_status_comes_back_with_its_body() -> None:
    reply = b'{"detail": "no"}'
    canned = Canned([ok(reply).replace(b"200 OK", b"422 Unprocessable Entity")])
    assert with_server(canned, lambda conn: conn.post(b"{}")) == (422, reply)


@pytest.mark.parametrize(
    "reply",
    [CHUNKED, b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{}"],
    ids=["chunked", "no-length"],
)
def test_a_reply_without_content_length_is_refused(reply: bytes) -> None:
    with pytest.raises(BadResponse, match="Content-Length"):
        with_server(Canned([reply]), lambda conn: conn.post(b"{}"))


def test_a_reused_connection_closed_by_the_server_is_retried_once_on_a_fresh_one() -> None:
    canned = Canned([ok(), ok()], close_after=True)

    async def talk(conn: AgentConnection) -> list[tuple[int, bytes]]:
        return [await conn.post(b"{}"), await conn.post(b"{}")]

    assert [status for status, _ in with_server(canned, talk)] == [200, 200]
    assert canned.connections == 2 and len(canned.requests) == 2


def test_a_fresh_connection_closed_unanswered_is_not_retried() -> None:
    canned = Canned([None, ok()])
    with pytest.raises(Unanswered):
        with_server(canned, lambda conn: conn.post(b"{}"))
    assert canned.connections == 1 and canned.requests == []


def test_connection_close_from_the_server_opens_a_new_connection_next_time() -> None:
    # the server would answer on the same connection: the client must not use it
    canned = Canned([ok(extra="connection: close\r\n"), ok()])

    async def talk(conn: AgentConnection) -> list[tuple[int, bytes]]:
        return [await conn.post(b"{}"), await conn.post(b"{}")]

    assert [status for status, _ in with_server(canned, talk)] == [200, 200]
    assert canned.connections == 2


def test_only_plain_http_urls_are_accepted() -> None:
    assert plain_http_address("http://127.0.0.1:8123") == ("127.0.0.1", 8123)
    with pytest.raises(RuntimeError, match="plain HTTP"):
        plain_http_address("https://127.0.0.1:8123")
