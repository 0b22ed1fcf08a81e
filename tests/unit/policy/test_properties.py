"""Properties of every registered policy combination over generated snapshots (Hypothesis).

Whatever the pieces: every pending job is decided exactly once; no placement exceeds
what is free, splits a gang, or uses a busy or unhealthy GPU or a node that is not up;
a preemption names a running attempt; the same snapshot gives the same decisions.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.domain.decisions import Decisions
from scheduler.domain.snapshot import (
    GpuRef,
    GpuView,
    NodeView,
    PendingJob,
    QueueView,
    ResourceRequest,
    RunningJob,
    Snapshot,
)
from scheduler.domain.status import NodeState
from scheduler.policy.registry import (
    ADMISSIONS,
    BACKFILLS,
    ORDERINGS,
    PLACEMENTS,
    PREEMPTIONS,
    make_policy,
)

NOW = 50_000.0
COMBINATIONS = list(itertools.product(ORDERINGS, PLACEMENTS, PREEMPTIONS, BACKFILLS, ADMISSIONS))
EXAMPLES = max(25, 240 // len(COMBINATIONS))  # the suite's time stays flat as pieces land
QUEUES = (
    QueueView("org", weight=2.0, guaranteed_gpus=4),
    QueueView("a", weight=1.0, guaranteed_gpus=2, parent="org"),
    QueueView("b", weight=1.0, borrow_limit_gpus=4, max_gpus=12),
    QueueView("c", weight=3.0, guaranteed_gpus=8),
)
JOB_QUEUES = ("a", "b", "c", "unlisted")
TYPES = ("A100-80GB", "H100", "L40S")
STATES = (NodeState.UP, NodeState.UP, NodeState.DRAINED, NodeState.LOST)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    nodes: list[NodeView] = []
    attempts: list[RunningJob] = []
    for n in range(draw(st.integers(0, 6))):
        name = f"n{n}"
        count = draw(st.sampled_from((0, 1, 2, 4, 8)))
        # runs of GPUs: (size, held by a running attempt?)
        runs = draw(st.lists(st.tuples(st.integers(1, 4), st.booleans()), max_size=count))
        owners: dict[int, int] = {}
        index = 0
        for size, held in runs:
            indices = range(index, min(count, index + size))
            index = indices.stop
            if held and indices:
                job_id = 10_000 + len(attempts)
                owners.update(dict.fromkeys(indices, job_id))
                attempts.append(draw(running_jobs(job_id, name, indices)))
        unhealthy = draw(st.sets(st.integers(0, max(0, count - 1)), max_size=2)) if count else set()
        kind, memory = draw(st.sampled_from(TYPES)), draw(st.sampled_from((40_960, 81_920)))
        gpus = tuple(
            GpuView(i, f"GPU-{name}-{i}", kind, memory, i not in unhealthy, owners.get(i))
            for i in range(count)
        )
        state = draw(st.sampled_from(STATES))
        nodes.append(NodeView(name, state, gpus))
    pending = [draw(pending_jobs(job_id)) for job_id in range(1, draw(st.integers(0, 14)) + 1)]
    return Snapshot(NOW, tuple(nodes), tuple(pending), tuple(attempts), QUEUES)


def running_jobs(job_id: int, node: str, indices: range) -> st.SearchStrategy[RunningJob]:
    return st.builds(
        RunningJob,
        job_id=st.just(job_id),
        attempt_id=st.just(job_id),
        queue=st.sampled_from(JOB_QUEUES),
        priority=st.integers(-1, 1),
        gpus=st.just(tuple(GpuRef(node, i) for i in indices)),
        started_at=st.sampled_from((NOW - 60, NOW - 3_600)),
        preemptible=st.booleans(),
        time_limit_s=st.sampled_from((None, 600, 7_200)),
        stopping=st.sampled_from((False, False, True)),
    )


def pending_jobs(job_id: int) -> st.SearchStrategy[PendingJob]:
    requests = st.one_of(
        st.builds(
            ResourceRequest,
            gpus=st.sampled_from((0, 1, 1, 2, 3, 4, 8, 9)),
            nodes=st.just(1),
            gpu_type=st.sampled_from((None, None, "a100-80gb", "H100", "V100")),
            gpu_memory_mib=st.sampled_from((None, None, 81_920)),
        ),
        st.builds(
            ResourceRequest,
            gpus=st.sampled_from((1, 2, 4, 8)),
            nodes=st.integers(2, 3),
            gpu_type=st.sampled_from((None, "L40S")),
        ),
    )
    return st.builds(
        PendingJob,
        job_id=st.just(job_id),
        queue=st.sampled_from(JOB_QUEUES),
        priority=st.integers(-1, 1),
        submitted_at=st.floats(0, 100).map(round),
        request=requests,
        preemptible=st.booleans(),
        time_limit_s=st.sampled_from((None, 60, 3_600)),
        not_before=st.sampled_from((None, None, NOW - 1, NOW + 30)),
        attained_gpu_s=st.sampled_from((0.0, 5_000.0, 50_000.0)),
    )


def check(snap: Snapshot, decisions: Decisions) -> None:
    jobs = {j.job_id: j for j in snap.pending}
    decided = Counter(
        [p.job_id for p in decisions.placements] + [w.job_id for w in decisions.waits]
    )
    assert decided == Counter(list(jobs)), "every pending job is decided exactly once"
    nodes = {n.name: n for n in snap.nodes}
    placed: list[GpuRef] = []
    for placement in decisions.placements:
        request = jobs[placement.job_id].request
        assert len(set(placement.nodes)) == len(placement.nodes) == request.nodes, "whole gang"
        per_node = Counter(ref.node for ref in placement.gpus)
        if request.gpus:
            assert per_node == dict.fromkeys(placement.nodes, request.gpus), "whole gang"
        for name in placement.nodes:
            assert nodes[name].schedulable
        for ref in placement.gpus:
            gpu = next(g for g in nodes[ref.node].gpus if g.index == ref.index)
            assert gpu.healthy and gpu.allocated_to is None, "only free, healthy GPUs"
        placed.extend(placement.gpus)
    assert len(placed) == len(set(placed)), "no GPU twice"
    free = sum(len(n.free_gpus()) for n in snap.nodes if n.schedulable)
    assert len(placed) <= free, "never more than is free"
    attempts = {r.attempt_id: r.job_id for r in snap.running}
    for preemption in decisions.preemptions:
        assert attempts.get(preemption.attempt_id) == preemption.job_id


@pytest.mark.parametrize(
    ("ordering", "placement", "preemption", "backfill", "admission"), COMBINATIONS
)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snap=snapshots())
def test_every_policy_keeps_the_invariants(
    snap: Snapshot, ordering: str, placement: str, preemption: str, backfill: str, admission: str
) -> None:
    policy = make_policy(ordering, placement, preemption, backfill, admission)
    decisions = policy.decide(snap)
    check(snap, decisions)
    assert policy.decide(snap) == decisions, "deterministic"
