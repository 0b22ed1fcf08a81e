"""The agent's only door to the server: one HTTP call, ``POST /api/v1/agent/sync``.

Errors come in two kinds, and only two: ``LinkError`` (the network, a timeout, a 5xx,
a reply we cannot read, or a 4xx other than auth: the caller keeps its attempts
running and retries) and ``AuthError`` (401/403: retrying cannot help, the agent
should stop).
"""

from __future__ import annotations

from typing import Protocol

import httpx
import pydantic

from scheduler import __version__
from scheduler.domain.sync import SyncReply, SyncRequest

SYNC_PATH = "/api/v1/agent/sync"
DEFAULT_TIMEOUT_S = 10.0
MAX_ERROR_TEXT = 300


class LinkError(Exception):
    """The sync failed in a way a later retry may fix."""


class AuthError(Exception):
    """The server refused the agent's token (401/403): fatal."""


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


class Link:
    """An HTTP client for one server. ``timeout_s`` is added to each request's long poll."""

    def __init__(
        self,
        server_url: str,
        token: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            base_url=server_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"corral-agent/{__version__}",
            },
            transport=transport,
        )

    async def sync(self, req: SyncRequest) -> SyncReply:
        """Post ``req`` and return the desired state; raises LinkError or AuthError."""
        timeout = httpx.Timeout(self._timeout_s, read=req.wait_s + self._timeout_s)
        try:
            response = await self._client.post(
                SYNC_PATH, json=req.model_dump(mode="json"), timeout=timeout
            )
        except httpx.TransportError as err:
            raise LinkError(f"cannot reach the server: {type(err).__name__}: {err}") from err
        if response.status_code in (401, 403):
            raise AuthError(f"server refused the agent token: {_error_text(response)}")
        if response.status_code != 200:
            raise LinkError(
                f"sync failed with HTTP {response.status_code}: {_error_text(response)}"
            )
        try:
            return SyncReply.model_validate_json(response.content)
        except pydantic.ValidationError as err:
            raise LinkError(f"unreadable sync reply: {err}") from err

    async def aclose(self) -> None:
        await self._client.aclose()
