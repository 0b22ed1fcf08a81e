"""The server's side of the agent sync, in memory, behind an ``httpx.MockTransport``.

It keeps the desired state (``run``, ``stop``), stores the log chunks it receives at
their offsets and acknowledges what it holds. A long poll is held until ``poke()``
(no timeout at all), so an agent that reports something while a long poll is open
proves that it cancelled the poll itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from scheduler.domain.sync import (
    AttemptLaunch,
    AttemptReport,
    AttemptState,
    AttemptStop,
    SyncReply,
    SyncRequest,
)

TOKEN = "agent-token"
ENDED = frozenset({AttemptState.EXITED, AttemptState.LAUNCH_FAILED})


class FakeServer:
    def __init__(self) -> None:
        self.run: dict[int, AttemptLaunch] = {}
        self.stop: dict[int, AttemptStop] = {}
        self.logs: dict[int, bytearray] = {}
        self.reports: dict[int, AttemptReport] = {}  # the latest report of each attempt
        self.requests: list[SyncRequest] = []
        self.replies: list[SyncReply] = []
        self.refused = 0  # requests that found the server down
        self.down = False
        self.acking = True  # store log chunks and acknowledge them
        self.end_on_exit = True  # drop an attempt from run/stop once it reported its end
        self.on_request: Callable[[SyncRequest], None] | None = None  # sees each request
        self.node_timeout_s: float | None = None  # sent in each reply (None: no self-fencing)
        self._poked = asyncio.Event()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    # --- what a test does --------------------------------------------------------------

    def poke(self) -> None:
        """Release every open long poll (the desired state changed)."""
        self._poked.set()
        self._poked = asyncio.Event()

    def want(self, launch: AttemptLaunch) -> None:
        self.run[launch.attempt_id] = launch
        self.poke()

    def unwant(self, attempt_id: int) -> None:
        self.run.pop(attempt_id, None)
        self.poke()

    def ask_stop(self, attempt_id: int, reason: str, grace_period_s: int = 30) -> None:
        self.run.pop(attempt_id, None)
        self.stop[attempt_id] = AttemptStop(
            attempt_id=attempt_id, reason=reason, grace_period_s=grace_period_s
        )
        self.poke()

    def set_down(self, down: bool) -> None:
        self.down = down
        self.poke()

    def state(self, attempt_id: int) -> AttemptState | None:
        report = self.reports.get(attempt_id)
        return None if report is None else report.state

    def log_text(self, attempt_id: int) -> str:
        return bytes(self.logs.get(attempt_id, b"")).decode()

    async def request_where(
        self, condition: Callable[[SyncRequest], bool], timeout_s: float = 20.0
    ) -> SyncRequest:
        """The first request from now on that meets ``condition`` (poking long polls)."""
        seen = len(self.requests)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for req in self.requests[seen:]:
                if condition(req):
                    return req
            seen = len(self.requests)
            self.poke()
            await asyncio.sleep(0.01)
        raise AssertionError("timed out waiting for a matching sync request")

    async def more_syncs(self, count: int) -> None:
        """Wait until ``count`` more requests came in (poking long polls)."""
        target = len(self.requests) + count
        await self.request_where(lambda _: len(self.requests) >= target)

    # --- the server ----------------------------------------------------------------------

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": {"message": "bad token"}})
        if not self.down:
            req = SyncRequest.model_validate_json(request.content)
            if self.on_request is not None:
                self.on_request(req)
            self.requests.append(req)
            self._take(req)
            if req.wait_s > 0:
                await self._poked.wait()
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        reply = SyncReply(
            node_state="up",
            run=list(self.run.values()),
            stop=list(self.stop.values()),
            log_acks={a: len(log) for a, log in self.logs.items()} if self.acking else {},
            node_timeout_s=self.node_timeout_s,
        )
        self.replies.append(reply)
        return httpx.Response(200, content=reply.model_dump_json())

    def _take(self, req: SyncRequest) -> None:
        for report in req.attempts:
            self.reports[report.attempt_id] = report
            log = self.logs.setdefault(report.attempt_id, bytearray())
            if self.acking and report.log_offset <= len(log):
                end = report.log_offset + len(report.log_data)
                log[report.log_offset : end] = report.log_data
            if self.end_on_exit and report.state in ENDED:
                self.run.pop(report.attempt_id, None)
                self.stop.pop(report.attempt_id, None)
