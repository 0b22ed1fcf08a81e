"""Properties of ``decide`` over many generated snapshots (seeded: failures replay).

For every snapshot and both passes: each pending job gets exactly one decision; no GPU
is placed twice or placed while busy, unhealthy, of the wrong type or memory, or on a
node that is not up; gangs are complete; multi-node jobs get idle nodes; waits say why.
A job that waits for GPUs (not in backoff, not behind a reservation) does not fit on
what the cycle left free, and its message says so against exactly that, as the
brute-force reference (``reference.py``) computes it on plain node views.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from scheduler.domain.decisions import Decisions, Placement, WaitReason
from scheduler.domain.snapshot import (
    GpuRef,
    GpuView,
    NodeView,
    PendingJob,
    ResourceRequest,
    RunningJob,
    Snapshot,
)
from scheduler.domain.status import NodeState
from scheduler.policy import can_ever_fit, make_policy
from scheduler.policy.placement import gpu_matches

from . import reference

SEEDS = range(400)
PASSES = ("greedy", "backfill")
TYPES = ("A100-80GB", "H100")
STATES = (NodeState.UP, NodeState.UP, NodeState.UP, NodeState.DRAINED, NodeState.LOST)
NOW = 10_000.0


def random_node(rng: random.Random, name: str, first_job: int) -> tuple[NodeView, list[RunningJob]]:
    """A node, some of its GPUs held by running attempts (one per 1-2 GPUs)."""
    gpu_type = rng.choice(TYPES)
    busy_rate = rng.choice((0.0, 0.0, 0.3, 0.7))  # some nodes idle, for multi-node jobs
    count = rng.choice((0, 1, 2, 4, 4, 8, 8))
    busy = [i for i in range(count) if rng.random() < busy_rate]
    owners: dict[int, int] = {}
    attempts: list[RunningJob] = []
    while busy:
        size = rng.choice((1, 2))
        take, busy = busy[:size], busy[size:]
        job_id = first_job + len(attempts)
        owners.update(dict.fromkeys(take, job_id))
        attempts.append(
            RunningJob(
                job_id=job_id,
                attempt_id=job_id,
                queue=rng.choice(("a", "b")),
                priority=0,
                gpus=tuple(GpuRef(name, i) for i in take),
                started_at=NOW - rng.choice((10, 1_000)),
                preemptible=rng.random() < 0.5,
                time_limit_s=rng.choice((None, 600, 3_600)),
                stopping=rng.random() < 0.1,
            )
        )
    gpus = tuple(
        GpuView(
            index=i,
            uuid=f"GPU-{name}-{i}",
            gpu_type=gpu_type,
            memory_mib=rng.choice((40_960, 81_920)),
            healthy=rng.random() > 0.1,
            allocated_to=owners.get(i),
        )
        for i in range(count)
    )
    return NodeView(name=name, state=rng.choice(STATES), gpus=gpus), attempts


def random_job(rng: random.Random, job_id: int) -> PendingJob:
    nodes = rng.choice((1, 1, 1, 2, 3))
    gpus = rng.choice((1, 2, 4)) if nodes > 1 else rng.choice((0, 1, 1, 2, 3, 4, 8, 9))
    gpu_type = rng.choice((None, None, "A100-80GB", "a100-80gb", "H100", "V100"))
    return PendingJob(
        job_id=job_id,
        queue=rng.choice(("a", "b")),
        priority=rng.choice((0, 0, 1, -1)),
        submitted_at=float(rng.randint(0, 20)),
        request=ResourceRequest(
            gpus=gpus,
            nodes=nodes,
            gpu_type=gpu_type,
            gpu_memory_mib=rng.choice((None, None, 40_960, 81_920)),
        ),
        preemptible=rng.random() < 0.5,
        time_limit_s=rng.choice((None, 60, 600, 7_200)),
        not_before=rng.choice((None, None, None, NOW - 5, NOW + 30)),
    )


def random_snapshot(seed: int) -> Snapshot:
    rng = random.Random(seed)
    nodes: list[NodeView] = []
    running: list[RunningJob] = []
    for name in rng.sample("abcdefgh", rng.randint(0, 8)):
        view, attempts = random_node(rng, name, 900 + 20 * len(nodes))
        nodes.append(view)
        running.extend(attempts)
    return Snapshot(
        now=NOW,
        nodes=tuple(nodes),
        pending=tuple(random_job(rng, i) for i in range(1, rng.randint(0, 14) + 1)),
        running=tuple(running),
    )


def assert_placement_is_valid(snap: Snapshot, job: PendingJob, placement: Placement) -> None:
    request = job.request
    assert len(placement.nodes) == len(set(placement.nodes)) == request.nodes
    per_node = Counter(ref.node for ref in placement.gpus)
    assert set(per_node) <= set(placement.nodes)
    if request.gpus:
        assert per_node == dict.fromkeys(placement.nodes, request.gpus)
    for name in placement.nodes:
        the_node = snap.node(name)
        assert the_node.schedulable
        if request.nodes > 1:
            assert the_node.is_idle
    for ref in placement.gpus:
        gpu = next(g for g in snap.node(ref.node).gpus if g.index == ref.index)
        assert gpu.allocated_to is None and gpu.healthy
        assert gpu_matches(request, gpu)


def assert_waits_are_explained(snap: Snapshot, decisions: Decisions) -> None:
    jobs = {j.job_id: j for j in snap.pending}
    left = snap.nodes
    for placement in decisions.placements:
        left = reference.claim(left, placement)
    up = [n for n in snap.nodes if n.schedulable]
    positions: dict[str, list[int]] = {}
    for wait in decisions.waits:
        job = jobs[wait.job_id]
        positions.setdefault(job.queue, []).append(wait.position or 0)
        in_backoff = job.not_before is not None and job.not_before > snap.now
        assert (wait.reason is WaitReason.BACKOFF) == in_backoff
        assert wait.message
        if in_backoff:
            continue
        if wait.reason is WaitReason.RESERVED:  # it would fit, on GPUs kept for another
            assert reference.best_fit(job, left) is not None
            assert "the free GPUs are reserved for job " in wait.message
            continue
        if "holds a reservation" in wait.message:
            assert wait.reason is WaitReason.INSUFFICIENT_GPUS
            continue
        assert reference.best_fit(job, left) is None  # work-conserving: it does not fit
        assert (wait.reason, wait.message) == reference.explain(job, left)
        assert wait.estimated_start is None
        if not up:
            assert wait.reason is WaitReason.NO_NODES
        if wait.reason is WaitReason.INSUFFICIENT_GPUS:
            assert can_ever_fit(job.request, up)
    for line in positions.values():
        assert line == list(range(1, len(line) + 1))


@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("seed", SEEDS)
def test_decide_on_random_snapshots(seed: int, pass_: str) -> None:
    snap = random_snapshot(seed)
    policy = make_policy(backfill=pass_)
    decisions = policy.decide(snap)
    jobs = {j.job_id: j for j in snap.pending}

    decided = [p.job_id for p in decisions.placements] + [w.job_id for w in decisions.waits]
    assert sorted(decided) == sorted(jobs), "every pending job gets exactly one decision"

    placed = [ref for p in decisions.placements for ref in p.gpus]
    assert len(placed) == len(set(placed)), "no GPU placed twice in one decision"
    for placement in decisions.placements:
        assert_placement_is_valid(snap, jobs[placement.job_id], placement)
    assert_waits_are_explained(snap, decisions)

    shuffled = list(snap.pending)
    random.Random(seed).shuffle(shuffled)
    again = policy.decide(
        Snapshot(
            now=snap.now, nodes=snap.nodes[::-1], pending=tuple(shuffled), running=snap.running
        )
    )
    assert again == decisions, "decisions depend only on the snapshot's content"


def test_the_generator_reaches_every_outcome() -> None:
    reasons: Counter[WaitReason] = Counter()
    placements = multi_node = reserved = 0
    for seed in SEEDS:
        for pass_ in PASSES:
            decisions = make_policy(backfill=pass_).decide(random_snapshot(seed))
            reasons.update(w.reason for w in decisions.waits)
            placements += len(decisions.placements)
            multi_node += sum(1 for p in decisions.placements if len(p.nodes) > 1)
            reserved += sum(1 for w in decisions.waits if "holds a reservation" in w.message)
    assert placements > 600 and multi_node > 20 and reserved > 50
    assert {
        WaitReason.BACKOFF,
        WaitReason.NO_NODES,
        WaitReason.GPU_TYPE_UNAVAILABLE,
        WaitReason.INSUFFICIENT_GPUS,
        WaitReason.RESERVED,
    } <= set(reasons)
