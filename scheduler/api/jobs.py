"""Job endpoints: submit (one, a batch, an array), list, show, cancel, logs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response

from scheduler.api.deps import People, RuntimeDep
from scheduler.api.ratelimit import SubmitLimiter
from scheduler.domain.spec import ArraySubmit, BatchSubmit, JobSpec, Text
from scheduler.domain.views import BatchResult, ErrorResponse, JobList, JobView, LogChunk
from scheduler.services import access, batch, jobs
from scheduler.services.bootstrap import Principal

# every route answers a bad request with the one error body (not FastAPI's default 422)
router = APIRouter(
    prefix="/api/v1/jobs",
    tags=["jobs"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)
MAX_ID = 2**31 - 1  # ids are 32-bit INTEGER columns on PostgreSQL: a larger one is no id
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorResponse, "description": "over the submit rate limit"}
}


def _admit(request: Request, who: Principal, queues: list[str]) -> None:
    """A user submits to its queues only, and every caller within its submit rate."""
    access.check_submit(who, queues)
    limiter: SubmitLimiter | None = request.app.state.submit_limiter
    if limiter is not None:
        limiter.take(who.name, len(queues))


@router.post(
    "",
    status_code=201,
    response_model=JobView,
    responses={
        200: {"model": JobView, "description": "the job this idempotency key submitted before"},
        409: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        **RATE_LIMITED,
    },
)
def submit(
    spec: JobSpec,
    rt: RuntimeDep,
    who: People,
    request: Request,
    response: Response,
    idempotency_key: Annotated[Text | None, Header(min_length=1, max_length=128)] = None,
) -> JobView:
    _admit(request, who, [spec.queue])
    view, created = jobs.submit(rt, spec, idempotency_key, submitted_by=who.name)
    if not created:
        response.status_code = 200
    return view


@router.post(
    "/batch",
    status_code=201,
    response_model=BatchResult,
    responses={422: {"model": ErrorResponse}, **RATE_LIMITED},
)
def submit_batch(
    body: BatchSubmit,
    rt: RuntimeDep,
    who: People,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=100)] = None,
) -> BatchResult:
    """Many jobs, all or none, in one transaction; a bad item is named (``jobs.3.queue``)."""
    _admit(request, who, [spec.queue for spec in body.jobs])
    result = batch.submit_batch(rt, body.jobs, idempotency_key, submitted_by=who.name)
    if not result.created:
        response.status_code = 200
    return result


@router.post(
    "/array",
    status_code=201,
    response_model=BatchResult,
    responses={422: {"model": ErrorResponse}, **RATE_LIMITED},
)
def submit_array(
    body: ArraySubmit,
    rt: RuntimeDep,
    who: People,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=100)] = None,
) -> BatchResult:
    """A job array: one job per index, in one transaction."""
    _admit(request, who, [body.spec.queue] * len(body.indices))
    result = batch.submit_array(rt, body.spec, body.indices, idempotency_key, submitted_by=who.name)
    if not result.created:
        response.status_code = 200
    return result


@router.post(
    "/array/{array_id}/cancel",
    response_model=BatchResult,
    responses={404: {"model": ErrorResponse}},
)
def cancel_array(array_id: JobId, rt: RuntimeDep, who: People) -> BatchResult:
    access.check_array(rt, who, array_id)
    return batch.cancel_array(rt, array_id)


@router.get("", response_model=JobList)
def list_jobs(
    rt: RuntimeDep,
    who: People,
    status: Annotated[str | None, Query(max_length=200)] = None,
    queue: Annotated[Text | None, Query(max_length=128)] = None,
    name: Annotated[Text | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    array_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> JobList:
    statuses = [s.strip() for s in status.split(",") if s.strip()] if status else []
    return jobs.list_jobs(
        rt,
        statuses=statuses,
        queue=queue,
        name=name,
        limit=limit,
        before_id=before_id,
        array_id=array_id,
        submitted_by=access.own_jobs_filter(who),
    )


@router.get("/{job_id}", response_model=JobView, responses={404: {"model": ErrorResponse}})
def show(job_id: JobId, rt: RuntimeDep, who: People) -> JobView:
    access.check_job(rt, who, job_id)
    return jobs.get_job(rt, job_id)


@router.post(
    "/{job_id}/cancel",
    response_model=JobView,
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
def cancel(job_id: JobId, rt: RuntimeDep, who: People) -> JobView:
    access.check_job(rt, who, job_id)
    return jobs.cancel(rt, job_id)


@router.get("/{job_id}/logs", response_model=LogChunk, responses={404: {"model": ErrorResponse}})
def logs(
    job_id: JobId,
    rt: RuntimeDep,
    who: People,
    attempt: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit_bytes: Annotated[int, Query(ge=1, le=jobs.MAX_LOG_READ_BYTES)] = 1024 * 1024,
) -> LogChunk:
    access.check_job(rt, who, job_id)
    return jobs.read_logs(rt, job_id, attempt, offset, limit_bytes)
