"""``GET /api/v1/history/jobs``: jobs that ended, oldest id first, paged by ``after_id``.

The export behind ``corral jobs --export`` (one JSON line per job), which ``corral
simulate --trace`` replays to try a policy on a cluster's own history.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from scheduler.api.deps import RuntimeDep, Staff
from scheduler.api.usage import window_start
from scheduler.domain.views import ErrorResponse, HistoryJob, HistoryPage
from scheduler.store.export import ended_jobs
from scheduler.store.models import utcnow

router = APIRouter(
    prefix="/api/v1/history",
    tags=["history"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},  # the history of every user's jobs is for staff
        422: {"model": ErrorResponse},
    },
)


@router.get("/jobs", response_model=HistoryPage)
def history_jobs(
    rt: RuntimeDep,
    _: Staff,
    after_id: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # a job id (INTEGER)
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    since: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    queue: Annotated[str | None, Query(min_length=1, max_length=128, pattern=r"^[^\x00]*$")] = None,
) -> HistoryPage:
    start = None if since is None else window_start(since, utcnow())
    with rt.db.read() as session:
        found = ended_jobs(session, after_id=after_id, limit=limit, since=start, queue=queue)
    jobs = [HistoryJob.model_validate(job, from_attributes=True) for job in found]
    return HistoryPage(jobs=jobs, next_after_id=jobs[-1].id if len(jobs) == limit else None)
