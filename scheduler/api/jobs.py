"""Job endpoints: submit (one, a batch, an array), list, show, cancel, logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response

from scheduler.api.deps import Auth, RuntimeDep
from scheduler.domain.spec import ArraySubmit, BatchSubmit, JobSpec, Text
from scheduler.domain.views import BatchResult, ErrorResponse, JobList, JobView, LogChunk
from scheduler.services import batch, jobs

# every route answers a bad request with the one error body (not FastAPI's default 422)
router = APIRouter(
    prefix="/api/v1/jobs",
    tags=["jobs"],
    responses={401: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
MAX_ID = 2**31 - 1  # ids are 32-bit INTEGER columns on PostgreSQL: a larger one is no id
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post(
    "",
    status_code=201,
    response_model=JobView,
    responses={
        200: {"model": JobView, "description": "the job this idempotency key submitted before"},
        409: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)
def submit(
    spec: JobSpec,
    rt: RuntimeDep,
    who: Auth,
    response: Response,
    idempotency_key: Annotated[Text | None, Header(min_length=1, max_length=128)] = None,
) -> JobView:
    view, created = jobs.submit(rt, spec, idempotency_key, submitted_by=who.name)
    if not created:
        response.status_code = 200
    return view


@router.post(
    "/batch", status_code=201, response_model=BatchResult, responses={422: {"model": ErrorResponse}}
)
def submit_batch(
    body: BatchSubmit,
    rt: RuntimeDep,
    who: Auth,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=100)] = None,
) -> BatchResult:
    """Many jobs, all or none, in one transaction; a bad item is named (``jobs.3.queue``)."""
    result = batch.submit_batch(rt, body.jobs, idempotency_key, submitted_by=who.name)
    if not result.created:
        response.status_code = 200
    return result


@router.post(
    "/array", status_code=201, response_model=BatchResult, responses={422: {"model": ErrorResponse}}
)
def submit_array(
    body: ArraySubmit,
    rt: RuntimeDep,
    who: Auth,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=100)] = None,
) -> BatchResult:
    """A job array: one job per index, in one transaction."""
    result = batch.submit_array(rt, body.spec, body.indices, idempotency_key, submitted_by=who.name)
    if not result.created:
        response.status_code = 200
    return result


@router.post(
    "/array/{array_id}/cancel",
    response_model=BatchResult,
    responses={404: {"model": ErrorResponse}},
)
def cancel_array(array_id: JobId, rt: RuntimeDep, _: Auth) -> BatchResult:
    return batch.cancel_array(rt, array_id)


@router.get("", response_model=JobList)
def list_jobs(
    rt: RuntimeDep,
    _: Auth,
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
    )


@router.get("/{job_id}", response_model=JobView, responses={404: {"model": ErrorResponse}})
def show(job_id: JobId, rt: RuntimeDep, _: Auth) -> JobView:
    return jobs.get_job(rt, job_id)


@router.post(
    "/{job_id}/cancel",
    response_model=JobView,
    responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}},
)
def cancel(job_id: JobId, rt: RuntimeDep, _: Auth) -> JobView:
    return jobs.cancel(rt, job_id)


@router.get("/{job_id}/logs", response_model=LogChunk, responses={404: {"model": ErrorResponse}})
def logs(
    job_id: JobId,
    rt: RuntimeDep,
    _: Auth,
    attempt: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit_bytes: Annotated[int, Query(ge=1, le=jobs.MAX_LOG_READ_BYTES)] = 1024 * 1024,
) -> LogChunk:
    return jobs.read_logs(rt, job_id, attempt, offset, limit_bytes)
