"""``GET /api/v1/usage``: GPU-hours allocated, used and lost per queue or user in a window
(the arithmetic is in ``store/accounting.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from scheduler.api.deps import People, RuntimeDep
from scheduler.domain.errors import Invalid
from scheduler.domain.units import parse_duration_s
from scheduler.domain.views import ErrorResponse, UsageReport
from scheduler.loops.rollup import retention_of
from scheduler.store.accounting import usage_report
from scheduler.store.models import utcnow

router = APIRouter(
    prefix="/api/v1/usage",
    tags=["usage"],
    responses={
        401: {"model": ErrorResponse},
        403: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
    },
)


def window_start(since: str, now: datetime) -> datetime:
    """``since`` as a duration back from now (``7d``, ``12h``) or an ISO 8601 time."""
    try:
        return now - timedelta(seconds=int(parse_duration_s(since)))
    except ValueError:
        pass
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise Invalid(
            f"not a duration or an ISO 8601 time: {since!r} (e.g. 7d, 12h, 2026-01-31T00:00Z)",
            field="since",
        ) from None
    if start.tzinfo is None:
        raise Invalid("an ISO 8601 time needs its UTC offset (e.g. Z)", field="since")
    if start >= now:
        raise Invalid("must be in the past", field="since")
    return start


@router.get("", response_model=UsageReport)
def usage(
    rt: RuntimeDep,
    _: People,
    by: Literal["queue", "user"] = "queue",
    since: Annotated[str, Query(min_length=1, max_length=64)] = "7d",
) -> UsageReport:
    now = utcnow()
    start = window_start(since, now)
    with rt.db.read() as session:
        entries = usage_report(session, by, start, now, retention_of(rt.settings))
    return UsageReport(by=by, since=start, until=now, entries=entries)
