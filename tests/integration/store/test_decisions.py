"""``apply_decisions`` beyond placements: preemptions become stops, waits keep their place.

A preemption is applied in the cycle's write transaction as ``request_stop(attempt,
PREEMPTED)``: the job goes stopping with an event saying why, its node is woken after
the commit, and once the agent reports the process gone the job is pending again,
keeping its submit time, no retry used. A preemption of an attempt that is already
stopping or over, or that names another job, is dropped.
"""

from __future__ import annotations

from scheduler.domain.decisions import Decisions, Preemption, Wait, WaitReason
from scheduler.domain.status import AttemptStatus, JobStatus, TerminationReason
from scheduler.store.db import Database
from scheduler.store.jobs import events_of, get_job, latest_attempt
from scheduler.store.placements import apply_decisions
from scheduler.store.views import job_views
from tests.factories import (
    add_job,
    add_queue,
    at,
    exited,
    node_facts,
    place,
    placement,
    report,
    sync,
)

N1 = node_facts("n1", gpus=4)


def wait(job_id: int, position: int | None, estimated_start: float | None) -> Wait:
    message = "needs 1 GPU on 1 node; the most free on one node is 0"
    return Wait(job_id, WaitReason.INSUFFICIENT_GPUS, message, position, estimated_start)


def _running_job(db: Database) -> tuple[int, int]:
    with db.write() as session:
        add_queue(session)
        job_id = add_job(session, gpus=2).id
    sync(db, N1)
    with db.write() as session:
        assert place(session, placement(job_id, {"n1": [0, 1]}), now=at(1)) == 1
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
    sync(db, N1, report(attempt.id), now=at(2))
    return job_id, attempt.id


def test_a_preemption_stops_the_attempt_and_requeues_its_job(db: Database) -> None:
    job_id, attempt_id = _running_job(db)
    why = "returns queue prod its guarantee of 4 GPUs for job 9"
    with db.write() as session:
        applied = apply_decisions(
            session, Decisions(preemptions=(Preemption(attempt_id, job_id, why),)), at(10)
        )
    assert (applied.preempted, applied.placed, applied.effects.nodes) == (1, 0, {"n1"})
    with db.read() as session:
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
        assert (attempt.status, attempt.stop_reason) == (
            AttemptStatus.STOPPING,
            TerminationReason.PREEMPTED,
        )
        assert get_job(session, job_id).status is JobStatus.STOPPING
        last = events_of(session, job_id)[-1]
        assert (last.new_status, last.message) == (
            JobStatus.STOPPING,
            f"attempt 1 preempted: {why}",
        )

    reply = sync(db, N1, report(attempt_id), now=at(11))
    assert [(s.attempt_id, s.reason) for s in reply.stop] == [(attempt_id, "preempted")]
    sync(db, N1, exited(attempt_id, -15, stopped_by_agent=True), now=at(12))
    with db.read() as session:
        job = get_job(session, job_id)
        assert (job.status, job.termination_reason) == (
            JobStatus.PENDING,
            TerminationReason.PREEMPTED,
        )
        assert (job.retries_used, job.submitted_at, job.attained_gpu_s) == (0, at(0), 20.0)


def test_a_preemption_that_came_too_late_is_dropped(db: Database) -> None:
    job_id, attempt_id = _running_job(db)
    stale = (
        Preemption(attempt_id, job_id + 1, "names another job"),
        Preemption(attempt_id + 1, job_id, "no such attempt"),
    )
    with db.write() as session:
        assert apply_decisions(session, Decisions(preemptions=stale), at(10)).preempted == 0
    twice = Decisions(preemptions=(Preemption(attempt_id, job_id, "first"),) * 2)
    with db.write() as session:
        assert apply_decisions(session, twice, at(10)).preempted == 1  # the second: stopping
    sync(db, N1, exited(attempt_id, -15, stopped_by_agent=True), now=at(12))
    with db.write() as session:
        again = Decisions(preemptions=(Preemption(attempt_id, job_id, "over"),))
        assert apply_decisions(session, again, at(13)).preempted == 0
        assert get_job(session, job_id).status is JobStatus.PENDING


def test_waits_keep_their_place_in_line_and_estimated_start(db: Database) -> None:
    with db.write() as session:
        add_queue(session)
        first, second = add_job(session).id, add_job(session).id
    decisions = Decisions(
        waits=(wait(first, 1, at(300).timestamp()), wait(second, 2, None)),
    )
    with db.write() as session:
        apply_decisions(session, decisions, at(5))
    with db.read() as session:
        views = {
            v.id: v for v in job_views(session, [get_job(session, first), get_job(session, second)])
        }
    assert (views[first].wait_position, views[first].wait_estimated_start) == (1, at(300))
    assert (views[second].wait_position, views[second].wait_estimated_start) == (2, None)
    assert views[first].wait_reason == "insufficient_gpus"

    sync(db, N1)
    with db.write() as session:
        place(session, placement(first, {"n1": [0]}), now=at(6))
    with db.read() as session:
        job = get_job(session, first)
        assert (job.wait_position, job.wait_estimated_start, job.wait_reason) == (None, None, None)


def test_a_place_alone_is_rewritten_only_when_positions_are_due(db: Database) -> None:
    with db.write() as session:
        add_queue(session)
        first, second = add_job(session).id, add_job(session).id
    with db.write() as session:
        apply_decisions(
            session, Decisions(waits=(wait(first, 2, None), wait(second, 3, None))), at(5)
        )
    # the queue moved up one place; the second job's estimate changed too
    moved = Decisions(waits=(wait(first, 1, None), wait(second, 2, at(90).timestamp())))
    with db.write() as session:
        apply_decisions(session, moved, at(6), positions=False)
    with db.read() as session:
        kept, rewritten = get_job(session, first), get_job(session, second)
        assert kept.wait_position == 2  # only its place changed: left for a later cycle
        assert (rewritten.wait_position, rewritten.wait_estimated_start) == (2, at(90))
    with db.write() as session:
        apply_decisions(session, moved, at(7))
    with db.read() as session:
        assert get_job(session, first).wait_position == 1
