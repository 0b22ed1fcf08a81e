"""The agent's only door to the server: one HTTP call, ``POST /api/v1/agent/sync``.

Errors come in two kinds, and only two: ``LinkError`` (the network, a timeout, a 5xx,
a reply we cannot read, or a 4xx other than auth: the caller keeps its attempts
running and retries) and ``AuthError`` (401/403: retrying cannot help, the agent
should stop).

Failover: given several servers (``http://a:8000,http://b:8000``: servers on one
PostgreSQL, any of which serves the sync), the link syncs with the first that answers.
On a connection error, a timeout or a 503 it moves on to the next at once, within the
same call, and stays with the one that answered until that one fails in turn; only when
every server failed does the call raise ``LinkError``.

TLS: an ``https://`` server is verified against ``ca`` (a PEM bundle, for a private
CA) or the system's CAs; a certificate that fails the check is a connection error like
any other, so the link tries the next server and the agent keeps retrying.
"""

from __future__ import annotations

import logging
import ssl
from typing import Protocol

import httpx
import pydantic

from scheduler import __version__
from scheduler.domain.sync import SyncReply, SyncRequest

SYNC_PATH = "/api/v1/agent/sync"
DEFAULT_TIMEOUT_S = 10.0
MAX_ERROR_TEXT = 300

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The sync failed in a way a later retry may fix."""


class Unreachable(LinkError):
    """This server did not answer, or answered 503: another server may serve the sync."""


class AuthError(Exception):
    """The server refused the agent's token (401/403): fatal."""


def server_urls(servers: str) -> list[str]:
    """``"http://a:8000/, http://b:8000"`` -> the URLs in order, without trailing slashes."""
    urls = [url.strip().rstrip("/") for url in servers.split(",")]
    if not all(urls):
        raise ValueError(f"bad server list {servers!r}: an empty URL")
    return urls


class SyncLink(Protocol):
    """What the daemon needs from a link (the real ``Link``, or a test double)."""

    async def sync(self, req: SyncRequest) -> SyncReply: ...

    async def aclose(self) -> None: ...


def _error_text(response: httpx.Response) -> str:
    """The server's ``{"error": {"message": ...}}``, else the start of the body."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return str(message).strip()[:MAX_ERROR_TEXT] or response.reason_phrase


def tls_verifier(ca: str | None) -> ssl.SSLContext | bool:
    """How to check an https server: against ``ca`` (a PEM file) or the system's CAs.

    Raises ValueError when the file cannot be read as a CA bundle.
    """
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot read the CA file {ca}: {exc}") from exc


def _error_places(err: pydantic.ValidationError) -> str:
    """``run.0.env: Input should be a valid dictionary``, with no input value (a reply
    carries secret env values)."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in err.errors(include_url=False, include_input=False)
    ]
    return "; ".join(parts[:3]) + (f" (and {len(parts) - 3} more)" if len(parts) > 3 else "")


class Link:
    """An HTTP client for one or more servers (``server_url`` may list several, comma
    separated; see failover above). ``timeout_s`` is added to each request's long poll."""

    def __init__(
        self,
        server_url: str,
        token: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        ca: str | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._urls = server_urls(server_url)
        self._current = 0  # the index of the server that answered last
        self._client = httpx.AsyncClient(
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"corral-agent/{__version__}",
            },
            transport=transport,
            verify=tls_verifier(ca),
        )

    @property
    def server_url(self) -> str:
        """The server the next sync goes to first."""
        return self._urls[self._current]

    async def sync(self, req: SyncRequest) -> SyncReply:
        """Post ``req`` and return the desired state; raises LinkError or AuthError.

        Tries each server once, starting with the current one (see failover above).
        """
        for _ in range(len(self._urls) - 1):
            try:
                return await self._sync_with(self.server_url, req)
            except Unreachable as err:
                failed = self.server_url
                self._current = (self._current + 1) % len(self._urls)
                log.warning("server %s failed (%s); trying %s", failed, err, self.server_url)
        return await self._sync_with(self.server_url, req)

    async def _sync_with(self, server_url: str, req: SyncRequest) -> SyncReply:
        timeout = httpx.Timeout(self._timeout_s, read=req.wait_s + self._timeout_s)
        try:
            response = await self._client.post(
                server_url + SYNC_PATH, json=req.model_dump(mode="json"), timeout=timeout
            )
        except httpx.TransportError as err:
            raise Unreachable(f"cannot reach the server: {type(err).__name__}: {err}") from err
        if response.status_code in (401, 403):
            raise AuthError(f"server refused the agent token: {_error_text(response)}")
        if response.status_code == 503:
            raise Unreachable(f"sync failed with HTTP 503: {_error_text(response)}")
        if response.status_code != 200:
            raise LinkError(
                f"sync failed with HTTP {response.status_code}: {_error_text(response)}"
            )
        try:
            return SyncReply.model_validate_json(response.content)
        except pydantic.ValidationError as err:  # its text would quote the env: no values
            raise LinkError(f"unreadable sync reply: {_error_places(err)}") from err

    async def aclose(self) -> None:
        await self._client.aclose()
