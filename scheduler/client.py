"""The Python SDK of corral: typed calls over the HTTP API of ``docs/api.md``.

Every method returns a view of ``scheduler.domain.views`` and every failure, whether
the server refused the request or could not be reached, is one ``CorralError`` with a
readable message (worded by ``scheduler.client_errors``, which the light client of
``corral submit`` shares).

    with CorralClient("http://127.0.0.1:8000", token) as client:
        job = client.submit(JobSpec(command=["python", "train.py"]))
        done = client.wait(job.id)
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from scheduler.client_errors import (
    CorralError,
    error_from_reply,
    timed_out,
    tls_context,
    unexpected_reply,
    unreachable,
)
from scheduler.domain.spec import JobSpec, QueuePatch, QueueSpec
from scheduler.domain.status import TERMINAL
from scheduler.domain.views import (
    BatchResult,
    Health,
    HistoryJob,
    HistoryPage,
    JobList,
    JobView,
    LogChunk,
    NodeInfo,
    NodeList,
    QueueInfo,
    QueueList,
    UsageReport,
)

if TYPE_CHECKING:
    from scheduler.domain.auth import (
        AuditList,
        TokenCreated,
        TokenList,
        TokenSpec,
        TokenView,
        UserList,
        UserPatch,
        UserSpec,
        UserView,
    )

API = "/api/v1"
V = TypeVar("V", bound=BaseModel)


def is_terminal(status: str) -> bool:
    """True for succeeded, failed and cancelled: the job will never change again."""
    return status in TERMINAL


class CorralClient:
    """A connection to one corral server, authenticated by a bearer token.

    ``transport`` replaces the network (tests pass an ``httpx.MockTransport``);
    ``sleep`` is what the polling helpers (``wait``, ``iter_logs``) wait with; ``ca``
    is a CA bundle (PEM) to verify an https server with instead of the system's.
    """

    def __init__(
        self,
        server: str,
        token: str | None,
        timeout_s: float = 30.0,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        ca: str | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.server,
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            verify=verifier(ca),
        )
        self._timeout_s = timeout_s
        self._sleep = sleep

    def __enter__(self) -> CorralClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- jobs ---------------------------------------------------------------------

    def submit(self, spec: JobSpec, idempotency_key: str | None = None) -> JobView:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = spec.model_dump(mode="json", exclude_unset=True)
        return self._call("POST", "/jobs", JobView, json=body, headers=headers)

    def submit_batch(
        self, specs: Sequence[JobSpec], idempotency_key: str | None = None
    ) -> BatchResult:
        """Many jobs in one request: all are stored or none (the error names the item)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {"jobs": [spec.model_dump(mode="json", exclude_unset=True) for spec in specs]}
        return self._call("POST", "/jobs/batch", BatchResult, json=body, headers=headers)

    def submit_array(
        self, spec: JobSpec, indices: str | Sequence[int], idempotency_key: str | None = None
    ) -> BatchResult:
        """A job array: one job per index (``"0-999"``, ``"0-9:2"``, ``"1,3,5"`` or a list)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        given = indices if isinstance(indices, str) else list(indices)
        body = {"spec": spec.model_dump(mode="json", exclude_unset=True), "indices": given}
        return self._call("POST", "/jobs/array", BatchResult, json=body, headers=headers)

    def cancel_array(self, array_id: int) -> BatchResult:
        """Cancel every job of the array that has not ended."""
        return self._call("POST", f"/jobs/array/{array_id}/cancel", BatchResult)

    def list_jobs(
        self,
        status: list[str] | None = None,
        queue: str | None = None,
        name: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
        array_id: int | None = None,
    ) -> JobList:
        params: dict[str, Any] = {"limit": limit}
        if array_id is not None:
            params["array_id"] = array_id
        if status:
            params["status"] = ",".join(status)
        if queue is not None:
            params["queue"] = queue
        if name is not None:
            params["name"] = name
        if before_id is not None:
            params["before_id"] = before_id
        return self._call("GET", "/jobs", JobList, params=params)

    def iter_jobs(
        self,
        status: list[str] | None = None,
        queue: str | None = None,
        name: str | None = None,
        page_size: int = 1000,
        array_id: int | None = None,
    ) -> Iterator[JobView]:
        """Every matching job, newest first, fetched page by page."""
        before_id: int | None = None
        while True:
            page = self.list_jobs(
                status, queue, name, limit=page_size, before_id=before_id, array_id=array_id
            )
            yield from page.jobs
            if page.next_before_id is None or not page.jobs:
                return
            before_id = page.next_before_id

    def iter_history(
        self, queue: str | None = None, since: str | None = None, page_size: int = 1000
    ) -> Iterator[HistoryJob]:
        """Every job that ended (since ``since``: ``7d`` or an ISO time), oldest first."""
        after_id = 0
        while True:
            params: dict[str, Any] = {"after_id": after_id, "limit": page_size}
            params.update({k: v for k, v in (("queue", queue), ("since", since)) if v})
            page = self._call("GET", "/history/jobs", HistoryPage, params=params)
            yield from page.jobs
            if page.next_after_id is None:
                return
            after_id = page.next_after_id

    def get_job(self, job_id: int) -> JobView:
        return self._call("GET", f"/jobs/{job_id}", JobView)

    def cancel(self, job_id: int) -> JobView:
        return self._call("POST", f"/jobs/{job_id}/cancel", JobView)

    def logs(
        self,
        job_id: int,
        attempt: int | None = None,
        offset: int = 0,
        limit_bytes: int | None = None,
    ) -> LogChunk:
        params: dict[str, Any] = {"offset": offset}
        if attempt is not None:
            params["attempt"] = attempt
        if limit_bytes is not None:
            params["limit_bytes"] = limit_bytes
        return self._call("GET", f"/jobs/{job_id}/logs", LogChunk, params=params)

    def iter_logs(
        self,
        job_id: int,
        attempt: int | None = None,
        offset: int = 0,
        follow: bool = False,
        poll_s: float = 0.5,
    ) -> Iterator[LogChunk]:
        """The log as non-empty chunks, from ``offset``.

        Without ``follow``: what exists now, then stop. With ``follow``: keep polling
        from each ``next_offset`` until the attempt's log is complete and the job has
        ended; following the latest attempt moves on to the job's next attempts.
        """
        if follow:
            yield from self._follow_logs(job_id, attempt, offset, poll_s)
            return
        while True:
            chunk = self.logs(job_id, attempt, offset)
            if not chunk.data or chunk.next_offset <= offset:
                return
            yield chunk
            attempt, offset = chunk.attempt, chunk.next_offset

    def _follow_logs(
        self, job_id: int, attempt: int | None, offset: int, poll_s: float
    ) -> Iterator[LogChunk]:
        number = attempt if attempt is not None else self._wait_for_attempt(job_id, poll_s)
        while number is not None:
            chunk = self.logs(job_id, number, offset)
            moved = bool(chunk.data) and chunk.next_offset > offset
            if moved:
                yield chunk
                offset = chunk.next_offset
                continue  # more may be there already: read again before sleeping
            if not chunk.complete:
                self._sleep(poll_s)
                continue
            if attempt is not None:
                return  # one attempt asked for, and its whole log was read
            job = self.get_job(job_id)
            if job.attempts_count > number:
                number, offset = number + 1, 0
            elif is_terminal(job.status):
                return
            else:
                self._sleep(poll_s)  # requeued or backing off: a next attempt will come

    def _wait_for_attempt(self, job_id: int, poll_s: float) -> int | None:
        """The number of the job's latest attempt once it has one; None if it ended first."""
        while True:
            job = self.get_job(job_id)
            if job.attempts_count:
                return job.attempts_count
            if is_terminal(job.status):
                return None
            self._sleep(poll_s)

    def wait(
        self,
        job_id: int,
        poll_s: float = 0.25,
        timeout_s: float | None = None,
        on_update: Callable[[JobView], None] | None = None,
    ) -> JobView:
        """Poll until the job is succeeded, failed or cancelled; return its last view.

        ``on_update`` sees every view polled (to report progress). Past ``timeout_s``
        it raises ``CorralError`` and the job goes on.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id)
            if on_update is not None:
                on_update(job)
            if is_terminal(job.status):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise CorralError(f"job {job_id} is still {job.status} after {timeout_s:g}s")
            self._sleep(poll_s)

    # -- queues -------------------------------------------------------------------

    def list_queues(self) -> QueueList:
        return self._call("GET", "/queues", QueueList)

    def get_queue(self, name: str) -> QueueInfo:
        return self._call("GET", f"/queues/{_seg(name)}", QueueInfo)

    def create_queue(self, spec: QueueSpec) -> QueueInfo:
        return self._call("POST", "/queues", QueueInfo, json=spec.model_dump(mode="json"))

    def update_queue(self, name: str, patch: QueuePatch) -> QueueInfo:
        body = patch.model_dump(mode="json", exclude_unset=True)
        return self._call("PATCH", f"/queues/{_seg(name)}", QueueInfo, json=body)

    # -- nodes --------------------------------------------------------------------

    def list_nodes(self) -> NodeList:
        return self._call("GET", "/nodes", NodeList)

    def get_node(self, name: str) -> NodeInfo:
        return self._call("GET", f"/nodes/{_seg(name)}", NodeInfo)

    def drain(self, name: str, reason: str | None = None) -> NodeInfo:
        body = {"reason": reason} if reason else {}
        return self._call("POST", f"/nodes/{_seg(name)}/drain", NodeInfo, json=body)

    def undrain(self, name: str) -> NodeInfo:
        return self._call("POST", f"/nodes/{_seg(name)}/undrain", NodeInfo)

    # -- usage --------------------------------------------------------------------

    def usage(self, by: str = "queue", since: str = "7d") -> UsageReport:
        """GPU-hours per queue or user since a duration ago (``7d``) or an ISO time."""
        return self._call("GET", "/usage", UsageReport, params={"by": by, "since": since})

    # -- users, tokens, audit (admins) ----------------------------------------------
    # (their views are imported when called: every other command starts without them)

    def list_users(self) -> UserList:
        from scheduler.domain.auth import UserList

        return self._call("GET", "/users", UserList)

    def get_user(self, name: str) -> UserView:
        from scheduler.domain.auth import UserView

        return self._call("GET", f"/users/{_seg(name)}", UserView)

    def create_user(self, spec: UserSpec) -> UserView:
        from scheduler.domain.auth import UserView

        return self._call("POST", "/users", UserView, json=spec.model_dump(mode="json"))

    def update_user(self, name: str, patch: UserPatch) -> UserView:
        from scheduler.domain.auth import UserView

        body = patch.model_dump(mode="json", exclude_unset=True)
        return self._call("PATCH", f"/users/{_seg(name)}", UserView, json=body)

    def delete_user(self, name: str) -> UserView:
        from scheduler.domain.auth import UserView

        return self._call("DELETE", f"/users/{_seg(name)}", UserView)

    def list_tokens(self, user: str | None = None) -> TokenList:
        from scheduler.domain.auth import TokenList

        params = {"user": user} if user else None
        return self._call("GET", "/tokens", TokenList, params=params)

    def create_token(self, spec: TokenSpec) -> TokenCreated:
        """A new token; its secret is in this reply only."""
        from scheduler.domain.auth import TokenCreated

        body = spec.model_dump(mode="json", exclude_none=True)
        return self._call("POST", "/tokens", TokenCreated, json=body)

    def revoke_token(self, token_id: int) -> TokenView:
        from scheduler.domain.auth import TokenView

        return self._call("POST", f"/tokens/{token_id}/revoke", TokenView)

    def audit(self, since: str | None = None, user: str | None = None) -> AuditList:
        from scheduler.domain.auth import AuditList

        params = {key: value for key, value in (("since", since), ("user", user)) if value}
        return self._call("GET", "/audit", AuditList, params=params or None)

    # -- health -------------------------------------------------------------------

    def health(self) -> Health:
        return self._call("GET", "/healthz", Health, prefix="")

    # -- plumbing -----------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        view: type[V],
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        prefix: str = API,
    ) -> V:
        try:
            response = self._http.request(
                method, prefix + path, params=params, json=json, headers=headers
            )
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise unreachable(self.server) from exc
            raise timed_out(self.server, self._timeout_s) from exc
        except httpx.TransportError as exc:
            raise unreachable(self.server, exc) from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        try:
            return view.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise unexpected_reply(
                self.server, method, prefix + path, response.status_code
            ) from exc


def verifier(ca: str | None) -> ssl.SSLContext | bool:
    """How to check an https server: against ``ca`` (a PEM file) or the system's CAs."""
    return True if ca is None else tls_context(ca)


def _seg(name: str) -> str:
    """A name as one URL path segment (a ``/`` in it cannot reach another route)."""
    return quote(name, safe="")


def error_from_response(response: httpx.Response) -> CorralError:
    """The server's ``{"error": {...}}`` body as a ``CorralError``; any other body too."""
    return error_from_reply(response.status_code, response.content, response.reason_phrase)
