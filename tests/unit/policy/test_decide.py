"""The greedy decision pass: backoff, placements in order, and the reason for each wait."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from scheduler.domain.decisions import Placement, Wait, WaitReason
from scheduler.domain.snapshot import GpuRef, NodeView, PendingJob, ResourceRequest, Snapshot
from scheduler.domain.status import NodeState
from scheduler.policy import make_policy
from scheduler.policy.context import Context, Pool
from scheduler.policy.decide import Policy, greedy, no_preemption
from scheduler.policy.explain import describe_request
from scheduler.policy.ordering import priority_fifo
from scheduler.policy.placement import best_fit

from .factories import NOW, free_only, job, node, snapshot

DEFAULT = make_policy(backfill="greedy")


def decide(snap: Snapshot) -> tuple[dict[int, Placement], dict[int, Wait]]:
    decisions = DEFAULT.decide(snap)
    assert decisions.preemptions == ()
    return (
        {p.job_id: p for p in decisions.placements},
        {w.job_id: w for w in decisions.waits},
    )


@pytest.mark.parametrize(
    ("not_before", "expected"),
    [
        (None, None),
        (NOW - 1, None),
        (NOW, None),  # due now: placed
        (NOW + 0.2, "waits out its retry backoff; eligible again in 1 s"),
        (NOW + 45, "waits out its retry backoff; eligible again in 45 s"),
    ],
)
def test_backoff(not_before: float | None, expected: str | None) -> None:
    placements, waits = decide(snapshot(node("a", 8), pending=[job(1, not_before=not_before)]))
    if expected is None:
        assert set(placements) == {1}
    else:
        assert waits[1] == Wait(1, WaitReason.BACKOFF, expected, position=1)


def test_a_job_in_backoff_leaves_its_gpus_to_the_next() -> None:
    snap = snapshot(
        free_only("a", 8, [0, 1]),
        pending=[job(1, 2, priority=9, not_before=NOW + 10), job(2, 2)],
    )
    placements, waits = decide(snap)
    assert waits[1].reason is WaitReason.BACKOFF
    assert placements[2].gpus == (GpuRef("a", 0), GpuRef("a", 1))


@dataclass(frozen=True)
class WaitCase:
    id: str
    nodes: tuple[NodeView, ...]
    job: PendingJob
    reason: WaitReason
    message: str


WAITS = [
    WaitCase(
        "no node registered",
        (),
        job(1, 1),
        WaitReason.NO_NODES,
        "needs 1 GPU on 1 node; no node has registered",
    ),
    WaitCase(
        "no node up",
        (
            node("a", state=NodeState.DRAINED),
            node("b", state=NodeState.LOST),
            node("c", state=NodeState.DRAINED),
        ),
        job(1, 4, gpu_type="A100-80GB"),
        WaitReason.NO_NODES,
        "needs 4 GPUs of type A100-80GB on 1 node; no node is up (2 drained, 1 lost)",
    ),
    WaitCase(
        "no node up for a job without GPUs",
        (node("a", state=NodeState.DRAINED),),
        job(1, 0),
        WaitReason.NO_NODES,
        "needs no GPU on 1 node; no node is up (1 drained)",
    ),
    WaitCase(
        "too few up nodes for a job without GPUs",
        (node("a"), node("b", state=NodeState.LOST)),
        job(1, 0, nodes=2),
        WaitReason.NO_NODES,
        "needs no GPU on each of 2 nodes; only 1 node is up",
    ),
    WaitCase(
        "type nowhere up",
        (node("a"), node("h", gpu_type="H100", state=NodeState.DRAINED)),
        job(1, 4, gpu_type="H100"),
        WaitReason.GPU_TYPE_UNAVAILABLE,
        "needs 4 GPUs of type H100 on 1 node; no up node has 4 matching healthy GPUs "
        "(the most on one node is 0)",
    ),
    WaitCase(
        "memory nowhere",
        (node("a", 8, memory_mib=40_960),),
        job(1, 2, gpu_memory_mib=81_920),
        WaitReason.GPU_TYPE_UNAVAILABLE,
        "needs 2 GPUs with at least 80 GiB each on 1 node; no up node has 2 matching healthy "
        "GPUs (the most on one node is 0)",
    ),
    WaitCase(
        "bigger than any up node",
        (node("a", 8, busy=range(8)), node("b", 4)),
        job(1, 16),
        WaitReason.GPU_TYPE_UNAVAILABLE,
        "needs 16 GPUs on 1 node; no up node has 16 healthy GPUs (the most on one node is 8)",
    ),
    WaitCase(
        "unhealthy GPUs make it impossible now",
        (node("a", 4, unhealthy=[2]),),
        job(1, 4),
        WaitReason.GPU_TYPE_UNAVAILABLE,
        "needs 4 GPUs on 1 node; no up node has 4 healthy GPUs (the most on one node is 3)",
    ),
    WaitCase(
        "the brief's example",
        (free_only("a", 8, [0, 1]), node("b", 8, busy=range(8)), node("h", 8, gpu_type="H100")),
        job(1, 4, gpu_type="A100-80GB"),
        WaitReason.INSUFFICIENT_GPUS,
        "needs 4 GPUs of type A100-80GB on 1 node; the most free on one node is 2",
    ),
    WaitCase(
        "free GPUs spread over nodes do not add up",
        (free_only("a", 8, [0, 1, 2]), free_only("b", 8, [0, 1, 2])),
        job(1, 4, gpu_memory_mib=512),
        WaitReason.INSUFFICIENT_GPUS,
        "needs 4 GPUs with at least 512 MiB each on 1 node; the most free on one node is 3",
    ),
    WaitCase(
        "multi-node: too few nodes could ever hold it",
        (node("a", 4), node("b", 4), node("c", 2), node("d", 4, state=NodeState.DRAINED)),
        job(1, 4, nodes=3),
        WaitReason.GPU_TYPE_UNAVAILABLE,
        "needs 4 GPUs on each of 3 nodes; only 2 up nodes have 4 healthy GPUs",
    ),
    WaitCase(
        "multi-node: one holder",
        (node("a", 8), node("h", 8, gpu_type="H100")),
        job(1, 8, nodes=2, gpu_type="H100"),
        WaitReason.GPU_TYPE_UNAVAILABLE,
        "needs 8 GPUs of type H100 on each of 2 nodes; only 1 up node has 8 matching healthy GPUs",
    ),
    WaitCase(
        "multi-node: not enough idle nodes",
        (node("a", 8), node("b", 8, busy=[0]), node("c", 8, busy=range(8)), node("d", 2)),
        job(1, 4, nodes=2),
        WaitReason.INSUFFICIENT_GPUS,
        "needs 4 GPUs on each of 2 nodes; it takes whole idle nodes and 1 of the 3 up nodes "
        "that could hold it is idle",
    ),
    WaitCase(
        "multi-node: none idle",
        (node("a", 8, busy=[1]), node("b", 8, busy=[0])),
        job(1, 4, nodes=2),
        WaitReason.INSUFFICIENT_GPUS,
        "needs 4 GPUs on each of 2 nodes; it takes whole idle nodes and 0 of the 2 up nodes "
        "that could hold it are idle",
    ),
]


@pytest.mark.parametrize("case", WAITS, ids=lambda c: c.id)
def test_wait_reason_and_message(case: WaitCase) -> None:
    placements, waits = decide(snapshot(*case.nodes, pending=[case.job]))
    assert placements == {}
    assert waits[case.job.job_id] == Wait(case.job.job_id, case.reason, case.message, position=1)


def test_every_wait_reason_of_the_greedy_pass_is_covered() -> None:
    covered = {c.reason for c in WAITS} | {WaitReason.BACKOFF}
    assert covered == {
        WaitReason.NO_NODES,
        WaitReason.GPU_TYPE_UNAVAILABLE,
        WaitReason.INSUFFICIENT_GPUS,
        WaitReason.BACKOFF,
    }


@pytest.mark.parametrize(
    ("request_", "text"),
    [
        (ResourceRequest(1), "1 GPU on 1 node"),
        (ResourceRequest(0), "no GPU on 1 node"),
        (
            ResourceRequest(4, 2, "A100-80GB", 40_960),
            "4 GPUs of type A100-80GB with at least 40 GiB each on each of 2 nodes",
        ),
        (ResourceRequest(2, gpu_memory_mib=1_500), "2 GPUs with at least 1500 MiB each on 1 node"),
    ],
)
def test_describe_request(request_: ResourceRequest, text: str) -> None:
    assert describe_request(request_) == text


def test_gpus_placed_in_this_cycle_are_not_free_for_the_next_job() -> None:
    snap = snapshot(node("a", 8), pending=[job(1, 6), job(2, 6)])
    placements, waits = decide(snap)
    assert set(placements) == {1}
    assert waits[2] == Wait(
        2,
        WaitReason.INSUFFICIENT_GPUS,
        "needs 6 GPUs on 1 node; the most free on one node is 2",
        position=1,
    )


def test_best_fit_across_a_cycle_packs_before_spreading() -> None:
    snap = snapshot(node("a", 8), node("b", 8), pending=[job(1, 3), job(2, 3), job(3, 8)])
    placements, waits = decide(snap)
    assert placements[1].nodes == placements[2].nodes == ("a",)
    assert placements[3].nodes == ("b",)
    assert waits == {}


def test_priority_wins_the_contended_gpus() -> None:
    snap = snapshot(
        free_only("a", 8, [0, 1, 2, 3]),
        pending=[job(1, 4, submitted_at=1.0), job(2, 4, priority=1, submitted_at=2.0)],
    )
    placements, waits = decide(snap)
    assert set(placements) == {2}
    assert waits[1].reason is WaitReason.INSUFFICIENT_GPUS


def test_fifo_wins_at_equal_priority() -> None:
    snap = snapshot(
        node("a", 4), pending=[job(2, 4, submitted_at=5.0), job(1, 4, submitted_at=9.0)]
    )
    placements, _ = decide(snap)
    assert set(placements) == {2}


def test_greedy_lets_a_smaller_job_take_gpus_a_bigger_one_ahead_waits_for() -> None:
    # No reservations yet: job 2 starts on GPUs job 1 (ahead of it) could not use.
    snap = snapshot(free_only("a", 8, range(6)), pending=[job(1, 8), job(2, 4), job(3, 4)])
    placements, waits = decide(snap)
    assert set(placements) == {2}
    assert waits[1].message == "needs 8 GPUs on 1 node; the most free on one node is 2"
    assert waits[3].message == "needs 4 GPUs on 1 node; the most free on one node is 2"


def test_a_multi_node_job_makes_its_nodes_busy_for_the_next_one() -> None:
    snap = snapshot(node("a", 8), node("b", 8), pending=[job(1, 4, nodes=2), job(2, 4, nodes=2)])
    placements, waits = decide(snap)
    assert placements[1].nodes == ("a", "b")
    assert waits[2].reason is WaitReason.INSUFFICIENT_GPUS


def test_decisions_follow_the_ordering() -> None:
    snap = snapshot(pending=[job(1), job(2, priority=3), job(3, priority=1)])
    assert [w.job_id for w in DEFAULT.decide(snap).waits] == [2, 3, 1]


def test_an_ordering_that_drops_a_job_is_a_bug() -> None:
    def drop_first(ctx: Context) -> list[PendingJob]:
        return priority_fifo(ctx)[1:]

    policy = Policy(drop_first, best_fit, no_preemption, greedy)
    with pytest.raises(ValueError, match=r"without a decision \[1\]"):
        policy.decide(snapshot(node("a"), pending=[job(1), job(2)]))


def test_a_placement_that_reuses_a_gpu_is_a_bug() -> None:
    def always_gpu_zero(pending: PendingJob, pool: Pool) -> Placement:
        return Placement(pending.job_id, ("a",), (GpuRef("a", 0),))

    policy = Policy(priority_fifo, always_gpu_zero, no_preemption, greedy)
    with pytest.raises(ValueError, match="not free"):
        policy.decide(snapshot(node("a"), pending=[job(1), job(2)]))


def test_decide_does_not_change_the_snapshot() -> None:
    snap = snapshot(node("a", 8), pending=[job(1, 4), job(2, 4, nodes=1)])
    before = repr(snap)
    DEFAULT.decide(snap)
    assert repr(snap) == before


def test_wait_messages_describe_what_the_cycle_leaves_free() -> None:
    snap = snapshot(free_only("a", 8, [0, 1, 2]), pending=[job(1, 4), job(2, 2), job(3, 4)])
    placements, waits = decide(snap)
    assert set(placements) == {2}
    assert waits[1].message == "needs 4 GPUs on 1 node; the most free on one node is 1"
    assert waits[3] == Wait(3, waits[1].reason, waits[1].message, position=2)


def test_a_request_that_did_not_fit_is_not_tried_again_in_the_cycle() -> None:
    calls: list[int] = []

    def counting_best_fit(pending: PendingJob, pool: Pool) -> Placement | None:
        calls.append(pending.job_id)
        return best_fit(pending, pool)

    jobs = [job(i, 4) for i in range(1, 101)] + [job(101, 1)]
    policy = Policy(priority_fifo, counting_best_fit, no_preemption, greedy)
    decisions = policy.decide(snapshot(free_only("a", 8, [0, 1]), pending=jobs))
    assert calls == [1, 101]
    assert [p.job_id for p in decisions.placements] == [101]
    assert [w.job_id for w in decisions.waits] == list(range(1, 101))
    assert {w.message for w in decisions.waits} == {
        "needs 4 GPUs on 1 node; the most free on one node is 1"
    }
