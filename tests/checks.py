"""Invariant checks on a corral database, for store, API and end-to-end tests alike.

``attempt_overlaps`` reads only the ``attempts`` and ``attempt_parts`` tables, so an
e2e test can run it on the database of a real server once its agents stopped:

    from tests.checks import assert_no_attempt_overlap
    assert_no_attempt_overlap(Database(database_url))   # or assert_no_attempt_overlap(url)

An attempt occupies ``[created_at, end)``: from the moment its GPUs were allocated to
the last end of its parts (or of the attempt), open while any part is still live.
No two attempts of one job may overlap: a job never runs twice at the same time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from scheduler.domain.status import PartState
from scheduler.store.db import Database
from scheduler.store.models import AttemptPartRow, AttemptRow

LIVE_PARTS = (PartState.PENDING, PartState.RUNNING)


@dataclass(frozen=True)
class Span:
    """When one attempt held its job: ``end`` None while it may still run."""

    job_id: int
    number: int
    start: datetime
    end: datetime | None

    def overlaps(self, later: Span) -> bool:
        """Whether ``later`` (which starts no earlier than this) begins before this ends."""
        return self.end is None or later.start < self.end

    def __str__(self) -> str:
        end = "still live" if self.end is None else self.end.isoformat()
        return f"attempt {self.number} [{self.start.isoformat()}, {end})"


def attempt_spans(session: Session) -> dict[int, list[Span]]:
    """job id -> the spans of its attempts, by start."""
    ends: dict[int, list[datetime | None]] = defaultdict(list)
    for attempt_id, state, ended_at in session.execute(
        select(AttemptPartRow.attempt_id, AttemptPartRow.state, AttemptPartRow.ended_at)
    ):
        ends[attempt_id].append(None if state in LIVE_PARTS else ended_at)
    spans: dict[int, list[Span]] = defaultdict(list)
    for attempt in session.scalars(select(AttemptRow)):
        part_ends = ends.get(attempt.id, [])
        end: datetime | None = None
        if None not in part_ends:
            end = max((e for e in (attempt.ended_at, *part_ends) if e is not None), default=None)
        spans[attempt.job_id].append(Span(attempt.job_id, attempt.number, attempt.created_at, end))
    for job_spans in spans.values():
        job_spans.sort(key=lambda s: (s.start, s.number))
    return spans


def attempt_overlaps(session: Session) -> list[str]:
    """One sentence per pair of attempts of one job whose spans overlap (none: [])."""
    found = []
    for job_id, spans in sorted(attempt_spans(session).items()):
        for i, earlier in enumerate(spans):
            found += [
                f"job {job_id}: {earlier} overlaps {later}"
                for later in spans[i + 1 :]
                if earlier.overlaps(later)
            ]
    return found


def assert_no_attempt_overlap(db: Database | str) -> None:
    """Fail with every overlap found: no attempt of a job ran while another did."""
    database = Database(db) if isinstance(db, str) else db
    try:
        with database.read() as session:
            overlaps = attempt_overlaps(session)
    finally:
        if isinstance(db, str):
            database.dispose()
    assert not overlaps, "attempts of one job overlap:\n" + "\n".join(overlaps)
