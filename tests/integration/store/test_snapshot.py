"""``build_snapshot``: the policy's picture of the cluster, read from the rows."""

from __future__ import annotations

from datetime import timedelta

from scheduler.domain.snapshot import GpuRef, ResourceRequest, TypeQuota
from scheduler.domain.status import JobStatus, NodeState, TerminationReason
from scheduler.store.attempts import request_stop
from scheduler.store.db import Database
from scheduler.store.jobs import get_job, latest_attempt
from scheduler.store.nodes import NODE_LOST, get_node, set_drained
from scheduler.store.snapshot import build_snapshot
from scheduler.store.transitions import transition_job
from tests.factories import (
    A100,
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


def _attempt_of(db: Database, job_id: int) -> int:
    with db.read() as session:
        attempt = latest_attempt(session, job_id)
        assert attempt is not None
        return attempt.id


def test_the_snapshot_reflects_nodes_allocations_and_pending_jobs(db: Database) -> None:
    for name in ("n1", "n2", "n3"):
        sync(db, node_facts(name, gpus=4))
    sync(db, node_facts("n2", gpus=3), now=at(1))  # n2's GPU 3 is no longer reported
    with db.write() as session:
        add_queue(session)
        add_queue(session, "research", weight=2.0, guaranteed_gpus=4, max_gpus=8)
        set_drained(session, "n2", True, "maintenance")
        get_node(session, "n3").state = NODE_LOST  # as the liveness loop does
        running = add_job(session, gpus=2, now=at(2)).id
        retried = add_job(session, gpus=1, now=at(3), max_retries=1).id
        waiting = add_job(
            session,
            gpus=2,
            now=at(4),
            queue="research",
            priority=5,
            resources={"gpu_type": A100, "gpu_memory_mib": 40_000},
        ).id
        cancelled = add_job(session, now=at(5)).id
    with db.write() as session:
        placed = place(
            session,
            placement(running, {"n1": [0, 1]}),
            placement(retried, {"n1": [2]}),
            now=at(10),
        )
        assert placed == 2
    run_id, retry_id = _attempt_of(db, running), _attempt_of(db, retried)
    sync(db, node_facts("n1"), report(run_id), report(retry_id), now=at(11))
    sync(db, node_facts("n1"), report(run_id), exited(retry_id, 1), now=at(20))  # backs off
    with db.write() as session:
        assert transition_job(
            session, cancelled, JobStatus.PENDING, JobStatus.CANCELLED, now=at(21)
        )

    with db.read() as session:
        snap = build_snapshot(session, at(30))
    assert snap.now == at(30).timestamp()

    nodes = {n.name: n for n in snap.nodes}
    assert {n: v.state for n, v in nodes.items()} == {
        "n1": NodeState.UP,
        "n2": NodeState.DRAINED,
        "n3": NodeState.LOST,
    }
    assert [(g.index, g.allocated_to) for g in nodes["n1"].gpus] == [
        (0, running),
        (1, running),
        (2, None),  # released when the failed attempt exited
        (3, None),
    ]
    assert [g.index for g in nodes["n2"].gpus] == [0, 1, 2]
    assert nodes["n1"].gpus[0].uuid == "GPU-n1-0"

    pending = {p.job_id: p for p in snap.pending}
    assert set(pending) == {retried, waiting}
    assert pending[waiting].request == ResourceRequest(
        gpus=2, nodes=1, gpu_type=A100, gpu_memory_mib=40_000
    )
    assert (pending[waiting].queue, pending[waiting].priority) == ("research", 5)
    assert pending[waiting].submitted_at == at(4).timestamp()
    assert pending[waiting].not_before is None
    assert pending[retried].not_before == (at(20) + timedelta(seconds=10)).timestamp()
    assert pending[retried].submitted_at == at(3).timestamp()
    assert pending[retried].attained_gpu_s == 9.0  # 1 GPU from at(11) to at(20)

    (run,) = snap.running
    assert (run.job_id, run.attempt_id, run.queue) == (running, run_id, "default")
    assert run.gpus == (GpuRef("n1", 0), GpuRef("n1", 1))
    assert run.started_at == at(11).timestamp()

    queues = {q.name: q for q in snap.queues}
    assert set(queues) == {"default", "research"}
    assert (queues["research"].weight, queues["research"].guaranteed_gpus) == (2.0, 4)
    assert queues["research"].max_gpus == 8


def test_the_snapshot_carries_orgs_usage_quotas_checkpoints_and_stops(db: Database) -> None:
    sync(db, node_facts("n1", gpus=4))
    with db.write() as session:
        add_queue(session, "ml", guaranteed_gpus=4)
        vision = add_queue(
            session,
            "vision",
            parent="ml",
            type_quotas=[{"gpu_type": A100, "guaranteed_gpus": 2, "max_gpus": 3}],
        )
        vision.usage_gpu_s = 1234.5
        first = add_job(session, queue="vision").id
        second = add_job(session, queue="vision").id
    with db.write() as session:
        place(session, placement(first, {"n1": [0]}), placement(second, {"n1": [1]}), now=at(1))
    first_attempt, second_attempt = _attempt_of(db, first), _attempt_of(db, second)
    with db.write() as session:
        attempt = latest_attempt(session, first)
        assert attempt is not None
        attempt.last_checkpoint_at = at(5)
        get_job(session, first).attained_gpu_s = 100.0  # what earlier attempts got
        other = latest_attempt(session, second)
        assert other is not None
        request_stop(session, other, TerminationReason.CANCELLED, at(6), "cancel requested")

    with db.read() as session:
        snap = build_snapshot(session, at(10))
    queues = {q.name: q for q in snap.queues}
    assert (queues["ml"].parent, queues["vision"].parent) == (None, "ml")
    assert queues["vision"].usage_gpu_s == 1234.5
    assert queues["vision"].type_quotas == (TypeQuota(A100, 2, 3),)
    running = {r.attempt_id: r for r in snap.running}
    assert running[first_attempt].last_checkpoint_at == at(5).timestamp()
    assert running[first_attempt].attained_gpu_s == 100.0
    assert (running[first_attempt].stopping, running[second_attempt].stopping) == (False, True)
    assert running[second_attempt].last_checkpoint_at is None
