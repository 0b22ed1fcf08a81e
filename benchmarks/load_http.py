"""The load benchmark's agent connection: a minimal HTTP/1.1 keep-alive client.

A thousand simulated agents share one event loop on a machine that also runs the
server and PostgreSQL, so what the generator spends per sync is part of every latency
it measures. A general client's pool bookkeeping, events and response reading cost
more than the server's work; this one does only what a sync needs: one connection per
agent, one ``POST`` at a time on it, a reply read by its ``Content-Length``.

What it does not do: TLS (the benchmark's server listens on loopback, plain HTTP; an
``https`` URL is refused), chunked or unbounded replies (uvicorn sends
``Content-Length`` for every reply built from bytes; anything else is an error),
redirects, or ``Expect: 100-continue``.

A keep-alive connection the server closed while idle (uvicorn's
``timeout_keep_alive``) shows as an EOF or a reset before any byte of the reply: that
request is sent once more on a fresh connection. Any other failure closes the
connection, and the next request opens a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

HEAD_END = b"\r\n\r\n"


class BadResponse(ValueError):
    """The server's reply is not one this client reads."""


class Unanswered(ConnectionError):
    """The connection closed (EOF or reset) before any byte of the reply."""


def plain_http_address(url: str) -> tuple[str, int]:
    """``http://HOST:PORT`` -> (host, port); any other scheme is refused."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise RuntimeError(
            f"the load generator speaks plain HTTP to a loopback server only, not {url!r}"
        )
    return parts.hostname, parts.port or 80


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """A response's status line and headers -> (status, lower-cased name -> value)."""
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise BadResponse(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One response -> (status, body, whether the connection stays open for the next).

    Raises ``Unanswered`` when the connection ends before the first byte, and
    ``BadResponse`` for a reply without ``Content-Length`` (chunked, or read to EOF)."""
    try:
        head = await reader.readuntil(HEAD_END)
    except asyncio.IncompleteReadError as err:
        if err.partial:
            raise BadResponse("the connection closed inside a reply's headers") from err
        raise Unanswered("the server closed the connection before answering") from err
    except ConnectionResetError as err:
        raise Unanswered("the server reset the connection before answering") from err
    status, headers = parse_head(head)
    if "transfer-encoding" in headers:
        raise BadResponse(
            f"HTTP {status} came with Transfer-Encoding: {headers['transfer-encoding']}; "
            "this client reads only Content-Length bodies"
        )
    length = headers.get("content-length")
    if length is None or not length.isdigit():
        raise BadResponse(f"HTTP {status} came without a Content-Length ({length!r})")
    body = await reader.readexactly(int(length))
    return status, body, headers.get("connection", "").lower() != "close"


class AgentConnection:
    """One agent's keep-alive connection: ``post`` sends a body to ``path`` as the agent
    (its bearer token) and returns the reply's status and body."""

    def __init__(self, host: str, port: int, path: str, token: str) -> None:
        self.host, self.port = host, port
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: "
        ).encode()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Send once; once more on a fresh connection when a reused one was closed."""
        reused = self._streams is not None
        try:
            try:
                return await self._exchange(body)
            except Unanswered:
                if not reused:
                    raise
                self.close()
                return await self._exchange(body)
        except BaseException:  # the stream is mid-exchange: it cannot carry the next one
            self.close()
            raise

    async def _exchange(self, body: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
        try:
            await writer.drain()
        except (ConnectionResetError, BrokenPipeError) as err:
            raise Unanswered("the server closed the connection before the request") from err
        status, reply, keep = await read_response(reader)
        if not keep:
            self.close()
        return status, reply

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

    async def aclose(self) -> None:
        """Close and wait until the socket is gone (when the agents stop)."""
        if self._streams is not None:
            writer = self._streams[1]
            self.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
