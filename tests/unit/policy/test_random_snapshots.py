"""Properties of ``decide`` over many generated snapshots (seeded: failures replay).

For every snapshot: each pending job gets exactly one decision; no GPU is placed twice
or placed while busy, unhealthy, of the wrong type or memory, or on a node that is not
up; gangs are complete; multi-node jobs get idle nodes; waits say why, and a job that
waits (not in backoff) does not fit on what the cycle left free, and its message
says so against exactly that.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from scheduler.domain.decisions import Decisions, Placement, WaitReason
from scheduler.domain.snapshot import GpuView, NodeView, PendingJob, ResourceRequest, Snapshot
from scheduler.domain.status import NodeState
from scheduler.policy import can_ever_fit, make_policy
from scheduler.policy.decide import explain_wait
from scheduler.policy.placement import best_fit, claim, gpu_matches

SEEDS = range(400)
TYPES = ("A100-80GB", "H100")
STATES = (NodeState.UP, NodeState.UP, NodeState.UP, NodeState.DRAINED, NodeState.LOST)


def random_node(rng: random.Random, name: str) -> NodeView:
    gpu_type = rng.choice(TYPES)
    busy_rate = rng.choice((0.0, 0.0, 0.3, 0.7))  # some nodes idle, for multi-node jobs
    gpus = tuple(
        GpuView(
            index=i,
            uuid=f"GPU-{name}-{i}",
            gpu_type=gpu_type,
            memory_mib=rng.choice((40_960, 81_920)),
            healthy=rng.random() > 0.1,
            allocated_to=900 + i if rng.random() < busy_rate else None,
        )
        for i in range(rng.choice((0, 1, 2, 4, 4, 8, 8)))
    )
    return NodeView(name=name, state=rng.choice(STATES), gpus=gpus)


def random_job(rng: random.Random, job_id: int, now: float) -> PendingJob:
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
        not_before=rng.choice((None, None, None, now - 5, now + 30)),
    )


def random_snapshot(seed: int) -> Snapshot:
    rng = random.Random(seed)
    now = 10_000.0
    names = rng.sample("abcdefgh", rng.randint(0, 8))
    return Snapshot(
        now=now,
        nodes=tuple(random_node(rng, n) for n in names),
        pending=tuple(random_job(rng, i, now) for i in range(1, rng.randint(0, 14) + 1)),
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
        left = claim(left, placement)
    up = [n for n in snap.nodes if n.schedulable]
    for wait in decisions.waits:
        job = jobs[wait.job_id]
        in_backoff = job.not_before is not None and job.not_before > snap.now
        assert (wait.reason is WaitReason.BACKOFF) == in_backoff
        assert wait.message
        if in_backoff:
            continue
        assert best_fit(job, left) is None  # work-conserving: it does not fit on what is left
        assert wait == explain_wait(job, left)  # explained against what is left
        if not up:
            assert wait.reason is WaitReason.NO_NODES
        if wait.reason is WaitReason.INSUFFICIENT_GPUS:
            assert can_ever_fit(job.request, up)


@pytest.mark.parametrize("seed", SEEDS)
def test_decide_on_random_snapshots(seed: int) -> None:
    snap = random_snapshot(seed)
    decisions = make_policy().decide(snap)
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
    again = make_policy().decide(
        Snapshot(now=snap.now, nodes=snap.nodes[::-1], pending=tuple(shuffled))
    )
    assert again == decisions, "decisions depend only on the snapshot's content"


def test_the_generator_reaches_every_outcome() -> None:
    reasons: Counter[WaitReason] = Counter()
    placements = multi_node = 0
    for seed in SEEDS:
        decisions = make_policy().decide(random_snapshot(seed))
        reasons.update(w.reason for w in decisions.waits)
        placements += len(decisions.placements)
        multi_node += sum(1 for p in decisions.placements if len(p.nodes) > 1)
    assert placements > 300 and multi_node > 10
    assert {
        WaitReason.BACKOFF,
        WaitReason.NO_NODES,
        WaitReason.GPU_TYPE_UNAVAILABLE,
        WaitReason.INSUFFICIENT_GPUS,
    } <= set(reasons)
