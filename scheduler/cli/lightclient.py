"""The HTTP client of ``corral submit``: the standard library only, JSON in and out.

A submit is one POST. Through ``scheduler.client`` it would first import httpx and
pydantic, most of the time a short-lived ``corral submit`` process takes; this client
sends the body the flags made with ``http.client`` and reads from the reply only
what the one output line needs. The server validates the spec. Every failure is the
``CorralError``, in the same words, that ``scheduler.client`` raises: both word it
through ``scheduler.client_errors``.

    client = LightClient("http://127.0.0.1:8000", token)
    job = client.submit({"command": ["true"], "resources": {"gpus": 1}})
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from scheduler.client_errors import (
    CorralError,
    error_from_reply,
    timed_out,
    tls_context,
    unexpected_reply,
    unreachable,
)

if TYPE_CHECKING:
    import ssl

    import httpx

    from scheduler.cli.config import CliContext

API = "/api/v1"


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    content: bytes


Send = Callable[[Request], Reply]


@dataclass(frozen=True)
class SubmittedJob:
    """The fields of the stored job the submit line shows, and the whole reply."""

    id: int
    name: str
    queue: str
    reply: dict[str, Any]


@dataclass(frozen=True)
class SubmittedArray:
    array_id: int
    job_ids: list[int]
    reply: dict[str, Any]


class LightClient:
    """Submits jobs and arrays to one corral server, authenticated by a bearer token.

    ``send`` replaces the network (the CLI's tests pass ``via_transport(fake)``);
    ``ca`` is a CA bundle (PEM) to verify an https server with instead of the system's.
    """

    def __init__(
        self,
        server: str,
        token: str | None,
        timeout_s: float = 30.0,
        *,
        ca: str | None = None,
        send: Send | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._send = send or HttpSender(self.server, timeout_s, ca)

    def submit(self, body: Mapping[str, Any], idempotency_key: str | None = None) -> SubmittedJob:
        """``POST /jobs`` with the spec's fields as given; the server fills the defaults."""
        reply = self._post("/jobs", body, idempotency_key)
        job_id, name, queue = _int(reply.get("id")), reply.get("name"), reply.get("queue")
        if job_id is None or not isinstance(name, str) or not isinstance(queue, str):
            raise unexpected_reply(self.server, "POST", API + "/jobs", 200)
        return SubmittedJob(job_id, name, queue, reply)

    def submit_array(
        self, spec: Mapping[str, Any], indices: str, idempotency_key: str | None = None
    ) -> SubmittedArray:
        """``POST /jobs/array``: one job per index of ``indices`` (``0-999``, ``1,3,5``)."""
        reply = self._post("/jobs/array", {"spec": spec, "indices": indices}, idempotency_key)
        array_id, job_ids = _int(reply.get("array_id")), reply.get("job_ids")
        if array_id is None or not isinstance(job_ids, list) or not job_ids:
            raise unexpected_reply(self.server, "POST", API + "/jobs/array", 200)
        return SubmittedArray(array_id, job_ids, reply)

    def _post(
        self, path: str, body: Mapping[str, Any], idempotency_key: str | None
    ) -> dict[str, Any]:
        headers = dict(self._headers)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        content = json.dumps(body).encode()
        reply = self._send(Request("POST", self.server + API + path, headers, content))
        if reply.status >= 400:
            raise error_from_reply(reply.status, reply.content, reply.reason)
        try:
            loaded = json.loads(reply.content)
        except ValueError:
            loaded = None
        if not isinstance(loaded, dict):
            raise unexpected_reply(self.server, "POST", API + path, reply.status)
        return loaded


def _int(value: object) -> int | None:
    """``value`` if it is a JSON integer, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class HttpSender:
    """One request on a new ``http.client`` connection (a CLI process sends one or two).

    A connection that fails, a TLS certificate that does not verify, or a connect that
    times out is an unreachable server; a reply that does not come in time is a timeout.
    """

    def __init__(self, server: str, timeout_s: float, ca: str | None) -> None:
        self.server = server
        self.timeout_s = timeout_s
        self._context = tls_context(ca) if ca is not None else None

    def __call__(self, request: Request) -> Reply:
        url = urlsplit(request.url)
        try:
            port = url.port
        except ValueError:
            raise CorralError(f"{self.server}: not a valid URL (its port)") from None
        connection = self._connection(url.scheme, url.hostname or "", port)
        target = url.path + (f"?{url.query}" if url.query else "")
        try:
            try:
                connection.connect()
            except OSError as exc:  # refused, unresolvable, TLS refused, connect timeout
                raise unreachable(self.server, exc) from exc
            try:
                connection.request(request.method, target, request.body, dict(request.headers))
                response = connection.getresponse()
                content = response.read()
            except TimeoutError as exc:
                raise timed_out(self.server, self.timeout_s) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise unreachable(self.server, exc) from exc
        finally:
            connection.close()
        return Reply(response.status, response.reason, content)

    def _connection(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        if scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=self.timeout_s)
        if scheme == "https":
            context: ssl.SSLContext = self._context or tls_context(None)
            return http.client.HTTPSConnection(host, port, timeout=self.timeout_s, context=context)
        raise CorralError(f"{self.server}: not an http:// or https:// URL")


def via_transport(transport: httpx.BaseTransport) -> Send:
    """Requests through an httpx transport instead of the network: the CLI's tests run
    this client on the same in-memory fake server as ``scheduler.client``."""
    import httpx

    def send(request: Request) -> Reply:
        outgoing = httpx.Request(
            request.method, request.url, headers=request.headers, content=request.body
        )
        response = transport.handle_request(outgoing)
        return Reply(response.status_code, response.reason_phrase, response.read())

    return send


def client_for(context: CliContext) -> LightClient:
    """The light client for the running command's server, token and CA."""
    target = context.target()
    send = via_transport(context.transport) if context.transport is not None else None
    return LightClient(target.server, target.token, ca=context.ca_file(), send=send)
