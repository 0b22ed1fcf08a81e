"""Telemetry series: a job's GPUs over time, from the history ``store/telemetry.py`` keeps.

The dashboard's job page draws its chart from ``GET /api/v1/jobs/{id}/telemetry``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from scheduler.api.deps import People, RuntimeDep
from scheduler.domain.views import ErrorResponse, JobTelemetry
from scheduler.loops.rollup import retention_of
from scheduler.services import access
from scheduler.store.models import utcnow
from scheduler.store.telemetry import attempt_of_job, attempt_series

router = APIRouter(
    prefix="/api/v1",
    tags=["telemetry"],
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
)
MAX_ID = 2**31 - 1


@router.get(
    "/jobs/{job_id}/telemetry",
    response_model=JobTelemetry,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
def job_telemetry(
    rt: RuntimeDep,
    who: People,
    job_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    attempt: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    since: Annotated[
        datetime | None, Query(description="from this time on (default: the attempt's start)")
    ] = None,
) -> JobTelemetry:
    """Utilisation, memory, temperature and power of an attempt's GPUs (default: the last)."""
    access.check_job(rt, who, job_id)
    now = utcnow()
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=now.tzinfo)
    with rt.db.read() as session:
        row = attempt_of_job(session, job_id, attempt)
        resolution_s, start, end, gpus = attempt_series(
            session, row, now=now, retention=retention_of(rt.settings), start=since
        )
        return JobTelemetry(
            job_id=job_id,
            attempt=row.number,
            start=start,
            end=end,
            resolution_s=resolution_s,
            gpus=gpus,
        )
