"""Job use cases: submit (durable before the reply), list, show, cancel, read logs."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from scheduler.domain.errors import Conflict, Invalid, NotFound
from scheduler.domain.spec import JobSpec
from scheduler.domain.status import LIVE_ATTEMPT, TERMINAL, JobStatus
from scheduler.domain.views import JobList, JobView, LogChunk
from scheduler.policy import can_ever_fit
from scheduler.runtime import Runtime
from scheduler.store import jobs as store_jobs
from scheduler.store.attempts import cancel_job
from scheduler.store.logs import read_log
from scheduler.store.models import utcnow
from scheduler.store.snapshot import node_views, request_of
from scheduler.store.views import job_detail, job_views, part_for_log

MAX_LOG_READ_BYTES = 4 * 1024 * 1024
UTF8_MAX_BYTES = 4


def submit(
    rt: Runtime,
    spec: JobSpec,
    idempotency_key: str | None = None,
    *,
    submitted_by: str | None = None,
) -> tuple[JobView, bool]:
    """Store a new job (committed before this returns); (view, created)."""
    try:
        return _submit_once(rt, spec, idempotency_key, submitted_by)
    except store_jobs.DuplicateKey:  # a concurrent submit with the same key won the race
        return _submit_once(rt, spec, idempotency_key, submitted_by)


def _submit_once(
    rt: Runtime, spec: JobSpec, key: str | None, submitted_by: str | None = None
) -> tuple[JobView, bool]:
    with rt.db.write() as session:
        if key is not None:
            existing = store_jobs.find_by_idempotency_key(session, key, spec)
            if existing is not None:
                return job_views(session, [existing])[0], False
        nodes = node_views(session)
        request = request_of(spec.model_dump(mode="json"))
        if nodes and not can_ever_fit(request, nodes):
            raise Invalid(
                f"no node can ever hold this job ({request.gpus} GPU(s)"
                f"{' of type ' + request.gpu_type if request.gpu_type else ''} on each of "
                f"{request.nodes} node(s)); the largest node has "
                f"{max(len(n.gpus) for n in nodes)} GPU(s)",
                field="resources",
                code="unsatisfiable",
            )
        row = store_jobs.insert_job(
            session, spec, now=utcnow(), idempotency_key=key, submitted_by=submitted_by
        )
        view = job_views(session, [row])[0]
    rt.notifier.wake(schedule=True)
    return view, True


def list_jobs(
    rt: Runtime,
    *,
    statuses: list[str],
    queue: str | None,
    name: str | None,
    limit: int,
    before_id: int | None,
    array_id: int | None = None,
    submitted_by: str | None = None,
) -> JobList:
    known = [s.value for s in JobStatus]
    unknown = [s for s in statuses if s not in known]
    if unknown:
        named = ", ".join(f"'{s}'" for s in unknown)
        raise Invalid(f"unknown status {named}; known: {', '.join(known)}", field="status")
    parsed = [JobStatus(s) for s in statuses]
    with rt.db.read() as session:
        rows, next_before = store_jobs.list_jobs(
            session,
            statuses=parsed,
            queue=queue,
            name=name,
            limit=limit,
            before_id=before_id,
            array_id=array_id,
            submitted_by=submitted_by,
        )
        return JobList(jobs=job_views(session, rows), next_before_id=next_before)


def get_job(rt: Runtime, job_id: int) -> JobView:
    with rt.db.read() as session:
        return job_detail(session, store_jobs.get_job(session, job_id))


def cancel(rt: Runtime, job_id: int) -> JobView:
    """Cancel is final: a pending job ends now; a live one is stopped first."""
    now = utcnow()
    with rt.db.write() as session:
        job = store_jobs.get_job(session, job_id, for_update=True)
        if job.status in TERMINAL:
            raise Conflict(
                f"job {job_id} already ended ({job.status.value})",
                field="job_id",
                code="job_finished",
            )
        effects = cancel_job(session, job, now, "cancel requested")
        session.flush()
        session.refresh(job)
        view = job_detail(session, job)
    rt.notifier.notify(effects)
    return view


def read_logs(
    rt: Runtime, job_id: int, attempt_number: int | None, offset: int, limit_bytes: int
) -> LogChunk:
    limit_bytes = max(1, min(limit_bytes, MAX_LOG_READ_BYTES))
    with rt.db.read() as session:
        job = store_jobs.get_job(session, job_id)
        attempts = store_jobs.attempts_of(session, job_id)
        if attempt_number is None:
            if not attempts:
                return LogChunk(
                    job_id=job_id,
                    attempt=0,
                    offset=offset,
                    next_offset=offset,
                    data="",
                    complete=job.status in TERMINAL,
                )
            attempt = attempts[-1]
        else:
            found = [a for a in attempts if a.number == attempt_number]
            if not found:
                raise NotFound(f"job {job_id} has no attempt {attempt_number}", field="attempt")
            attempt = found[0]
        part = part_for_log(session, attempt)
        ended = attempt.status not in LIVE_ATTEMPT
        held = part.log_bytes if part else 0
        data = b""
        if part is not None:
            data = _page(partial(read_log, session, part), held, offset, limit_bytes, final=ended)
        return LogChunk(
            job_id=job_id,
            attempt=attempt.number,
            offset=offset,
            next_offset=offset + len(data),
            data=data.decode("utf-8", errors="replace"),
            complete=ended and offset + len(data) >= held,
        )


def _page(
    read: Callable[[int, int], bytes], held: int, offset: int, limit_bytes: int, *, final: bool
) -> bytes:
    """Up to ``limit_bytes`` of the log from ``offset``, ending on a whole UTF-8 character.

    A character cut at the end of the page is left for the next page; a page too short
    for its first character grows to hold it (else a reader would never get past it).
    The end of a finished log is returned as it is, even when a process killed in the
    middle of a write left half a character there (else it would never be complete).
    """
    data = read(offset, limit_bytes)
    whole = _whole_chars(data)
    if data and not whole:
        data = read(offset, max(limit_bytes, UTF8_MAX_BYTES))
        whole = _whole_chars(data)
    if final and offset + len(data) >= held:
        return data
    return whole


def _whole_chars(data: bytes) -> bytes:
    """Cut a UTF-8 character split at the end of a page; the next page starts with it.

    Only the last character is looked at, so bytes that are not UTF-8 earlier in the
    page do not stop the cut: ``b"\\xff ok \\xe2\\x82"`` -> ``b"\\xff ok "``.
    """
    for back in range(1, min(UTF8_MAX_BYTES, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # a continuation byte: the character started earlier
            continue
        return data[:-back] if _utf8_length(byte) > back else data
    return data


def _utf8_length(lead: int) -> int:
    """The length of the UTF-8 character that starts with byte ``lead`` (1 if no lead)."""
    if lead & 0xE0 == 0xC0:
        return 2
    if lead & 0xF0 == 0xE0:
        return 3
    if lead & 0xF8 == 0xF0:
        return 4
    return 1
