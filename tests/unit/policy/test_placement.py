"""Gang best-fit placement, table by table: one row per rule of the module docstring.

Every row also checks the brute-force reference (``reference.best_fit``) on the views.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import GpuRef, NodeView, PendingJob
from scheduler.domain.status import NodeState
from scheduler.policy.placement import best_fit, can_ever_fit
from scheduler.policy.pool import FreePool

from . import reference
from .factories import A100, free_only, job, mixed_node, node


def refs(*texts: str) -> tuple[GpuRef, ...]:
    """``refs("b:5", "b:7")`` -> the GpuRefs."""
    out = []
    for text in texts:
        name, index = text.split(":")
        out.append(GpuRef(name, int(index)))
    return tuple(out)


@dataclass(frozen=True)
class Case:
    id: str
    nodes: tuple[NodeView, ...]
    job: PendingJob
    expected_nodes: tuple[str, ...] | None  # None: no placement
    expected_gpus: tuple[GpuRef, ...] = ()


# The worked example of the module docstring: a 8/8 free, b 2/8 free, c 3/4 free.
EXAMPLE = (node("a", 8), free_only("b", 8, [5, 7]), free_only("c", 4, [0, 1, 2]))

SINGLE_NODE = [
    Case("fewest free that fits", EXAMPLE, job(1, 2), ("b",), refs("b:5", "b:7")),
    Case("keeps the big node whole", EXAMPLE, job(1, 3), ("c",), refs("c:0", "c:1", "c:2")),
    Case("only the big node fits", EXAMPLE, job(1, 5), ("a",), refs(*(f"a:{i}" for i in range(5)))),
    Case(
        "tie on free: fewer total GPUs",
        (free_only("a", 8, [4, 5, 6, 7]), node("b", 4)),
        job(1, 4),
        ("b",),
        refs("b:0", "b:1", "b:2", "b:3"),
    ),
    Case(
        "tie on free and total: name", (node("b", 4), node("a", 4)), job(1, 1), ("a",), refs("a:0")
    ),
    Case(
        "lowest free indices",
        (free_only("a", 8, [7, 1, 6, 3]),),
        job(1, 2),
        ("a",),
        refs("a:1", "a:3"),
    ),
    Case("exact fit", (free_only("a", 8, [2, 3]),), job(1, 2), ("a",), refs("a:2", "a:3")),
    Case(
        "gang: never split over nodes",
        (free_only("a", 8, [0, 1, 2]), free_only("b", 8, [0, 1, 2])),
        job(1, 4),
        None,
    ),
    Case("too big for any node", (node("a", 8), node("b", 8)), job(1, 9), None),
    Case(
        "type is case-insensitive",
        (node("a", 2, gpu_type="A100-80GB"),),
        job(1, 2, gpu_type="a100-80gb"),
        ("a",),
        refs("a:0", "a:1"),
    ),
    Case(
        "type skips a tighter node of another type",
        (node("h", 2, gpu_type="H100"), node("a", 8)),
        job(1, 2, gpu_type=A100),
        ("a",),
        refs("a:0", "a:1"),
    ),
    Case("type nowhere", (node("a", 8),), job(1, 1, gpu_type="H100"), None),
    Case(
        "memory: small GPUs skipped",
        (node("small", 2, memory_mib=40_960), node("big", 8, memory_mib=81_920)),
        job(1, 2, gpu_memory_mib=81_920),
        ("big",),
        refs("big:0", "big:1"),
    ),
    Case(
        "memory: only the big GPUs of a mixed node",
        (mixed_node("m", ("A100-40GB", 40_960), ("A100-80GB", 81_920), ("A100-80GB", 81_920)),),
        job(1, 2, gpu_memory_mib=50_000),
        ("m",),
        refs("m:1", "m:2"),
    ),
    Case(
        "memory: too little on a mixed node",
        (mixed_node("m", ("A100-40GB", 40_960), ("A100-80GB", 81_920)),),
        job(1, 2, gpu_memory_mib=50_000),
        None,
    ),
    Case("unhealthy GPUs are never used", (node("a", 4, unhealthy=[1]),), job(1, 4), None),
    Case(
        "unhealthy GPUs are skipped",
        (node("a", 4, unhealthy=[0, 2]),),
        job(1, 2),
        ("a",),
        refs("a:1", "a:3"),
    ),
    Case(
        "unhealthy GPUs do not count as free for best fit",
        (node("a", 4, unhealthy=[0, 1]), node("b", 3)),
        job(1, 2),
        ("a",),
        refs("a:2", "a:3"),
    ),
    Case("drained node skipped", (node("a", 8, state=NodeState.DRAINED),), job(1, 1), None),
    Case(
        "lost node skipped for a worse fit",
        (node("lost", 1, state=NodeState.LOST), node("up", 8)),
        job(1, 1),
        ("up",),
        refs("up:0"),
    ),
    Case("no node at all", (), job(1, 1), None),
]

MULTI_NODE = [
    Case(
        "closest GPU count keeps the big node free",
        (node("a", 8), node("d", 4), node("e", 4)),
        job(1, 4, nodes=2),
        ("d", "e"),
        refs("d:0", "d:1", "d:2", "d:3", "e:0", "e:1", "e:2", "e:3"),
    ),
    Case(
        "only whole idle nodes, even with enough free GPUs",
        (node("a", 8, busy=[7]), node("b", 8)),
        job(1, 4, nodes=2),
        None,
    ),
    Case(
        "the busy node is skipped",
        (node("a", 8, busy=[7]), node("c", 8), node("b", 8)),
        job(1, 2, nodes=2),
        ("b", "c"),
        refs("b:0", "b:1", "c:0", "c:1"),
    ),
    Case(
        "ties on GPU count: names, rank = position",
        (node("z", 8), node("m", 8), node("b", 8)),
        job(1, 8, nodes=3),
        ("b", "m", "z"),
        refs(*(f"{n}:{i}" for n in "bmz" for i in range(8))),
    ),
    Case("not enough idle nodes", (node("a", 8), node("b", 8)), job(1, 1, nodes=3), None),
    Case("node too small", (node("a", 4), node("b", 8)), job(1, 8, nodes=2), None),
    Case(
        "idle node with an unhealthy GPU still holds what is healthy",
        (node("a", 8, unhealthy=[0]), node("b", 8, unhealthy=[1])),
        job(1, 2, nodes=2),
        ("a", "b"),
        refs("a:1", "a:2", "b:0", "b:2"),
    ),
    Case(
        "idle node with too few healthy GPUs",
        (node("a", 4, unhealthy=[0]), node("b", 4)),
        job(1, 4, nodes=2),
        None,
    ),
    Case(
        "type and memory on every node",
        (
            node("a", 4, gpu_type="H100"),
            node("b", 4, memory_mib=40_960),
            node("c", 4),
            node("d", 4),
        ),
        job(1, 4, nodes=2, gpu_type="a100-80GB", gpu_memory_mib=81_920),
        ("c", "d"),
        refs(*(f"{n}:{i}" for n in "cd" for i in range(4))),
    ),
    Case(
        "drained idle node skipped",
        (node("a", 4, state=NodeState.DRAINED), node("b", 4), node("c", 4)),
        job(1, 4, nodes=2),
        ("b", "c"),
        refs(*(f"{n}:{i}" for n in "bc" for i in range(4))),
    ),
]

WITHOUT_GPUS = [
    Case(
        "prefers a node without free GPUs",
        (node("a", 8), node("b", 8, busy=range(8)), node("c", 0)),
        job(1, 0),
        ("b",),
    ),
    Case("then names", (node("b", 8), node("a", 8)), job(1, 0), ("a",)),
    Case(
        "a node whose only free GPUs are unhealthy has none free",
        (node("a", 2), node("b", 2, unhealthy=[0, 1])),
        job(1, 0),
        ("b",),
    ),
    Case(
        "skips nodes that are not up",
        (node("a", 0, state=NodeState.LOST), node("b", 8)),
        job(1, 0),
        ("b",),
    ),
    Case("no up node", (node("a", 8, state=NodeState.DRAINED),), job(1, 0), None),
    Case(
        "several nodes", (node("c", 0), node("b", 8), node("a", 0)), job(1, 0, nodes=2), ("a", "c")
    ),
]


@pytest.mark.parametrize("case", SINGLE_NODE + MULTI_NODE + WITHOUT_GPUS, ids=lambda c: c.id)
def test_best_fit(case: Case) -> None:
    placement = best_fit(case.job, FreePool(case.nodes))
    assert placement == reference.best_fit(case.job, case.nodes)
    if case.expected_nodes is None:
        assert placement is None
    else:
        assert placement == Placement(case.job.job_id, case.expected_nodes, case.expected_gpus)


def test_best_fit_does_not_depend_on_node_order() -> None:
    nodes = (node("a", 8), free_only("b", 8, [5, 7]), free_only("c", 4, [0, 1, 2]), node("d", 4))
    for request in (job(1, 1), job(1, 3), job(1, 4, nodes=2), job(1, 0)):
        assert best_fit(request, FreePool(nodes)) == best_fit(request, FreePool(nodes[::-1]))


@pytest.mark.parametrize(
    ("request_job", "nodes", "expected"),
    [
        (job(1, 8), (node("a", 8, busy=range(8)),), True),  # allocation is ignored
        (job(1, 8), (node("a", 8, state=NodeState.LOST),), True),  # state is ignored
        (job(1, 8), (node("a", 8, unhealthy=[3]),), True),  # health is ignored: repairable
        (job(1, 9), (node("a", 8), node("b", 8)), False),  # never split over nodes
        (job(1, 2, gpu_type="h100"), (node("a", 8), node("h", 2, gpu_type="H100")), True),
        (job(1, 1, gpu_type="H100"), (node("a", 8),), False),
        (job(1, 1, gpu_memory_mib=81_921), (node("a", 8),), False),
        (job(1, 1, gpu_memory_mib=81_920), (node("a", 8),), True),
        (job(1, 4, nodes=2), (node("a", 4), node("b", 8, busy=[0])), True),
        (job(1, 4, nodes=3), (node("a", 4), node("b", 8), node("c", 2)), False),
        (job(1, 0), (node("a", 0),), True),
        (job(1, 0), (), False),
        (job(1, 1), (), False),
    ],
)
def test_can_ever_fit(request_job: PendingJob, nodes: tuple[NodeView, ...], expected: bool) -> None:
    assert can_ever_fit(request_job.request, nodes) is expected


def test_take_allocates_exactly_the_placed_gpus() -> None:
    nodes = (node("a", 4), node("b", 2))
    pool = FreePool(nodes)
    pool.take(Placement(7, ("a",), refs("a:1", "a:3")))
    assert pool.free_indices("a", job(1).request) == (0, 2)
    assert pool.free_indices("b", job(1).request) == (0, 1)
    assert nodes[0].free_gpus() == nodes[0].gpus  # the views are not changed
    assert pool.nodes == (nodes[1], nodes[0])  # the views, in (GPU count, name) order


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        (Placement(7, ("a",), refs("a:0", "a:0")), "placed twice"),
        (Placement(7, ("a",), refs("a:1")), "not free"),  # busy
        (Placement(7, ("a",), refs("a:2")), "not free"),  # unhealthy
        (Placement(7, ("a",), refs("a:9")), "not free"),  # no such index
        (Placement(7, ("x",), refs("x:0")), "no such node"),
        (Placement(7, ("d",), refs("d:0")), "drained"),
    ],
)
def test_take_rejects_a_placement_that_is_not_free(placement: Placement, message: str) -> None:
    nodes = (node("a", 4, busy=[1], unhealthy=[2]), node("d", 4, state=NodeState.DRAINED))
    pool = FreePool(nodes)
    with pytest.raises(ValueError, match=message):
        pool.take(placement)
    assert pool.free_indices("a", job(1).request) == (0, 3)  # nothing taken


def test_a_gpu_cannot_be_taken_twice() -> None:
    pool = FreePool((node("a", 2),))
    pool.take(Placement(1, ("a",), refs("a:0")))
    with pytest.raises(ValueError, match=r"GPUs \[0\] of a not free"):
        pool.take(Placement(2, ("a",), refs("a:0")))
