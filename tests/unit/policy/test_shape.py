"""The nodes' shape, kept across cycles: found again for the same shape whatever the
allocations, worked out anew when a node's state, a GPU's health or type, or the node
set changes; and what the pool, the context and the timeline read from it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scheduler.domain.snapshot import NodeView
from scheduler.domain.status import NodeState
from scheduler.policy import shape as shape_module
from scheduler.policy.context import make_context
from scheduler.policy.pool import FreePool
from scheduler.policy.shape import shape_of

from .factories import job, mixed_node, node, snapshot

CLUSTER = (node("b", 8), node("a", 8), node("c", 4))
ONE_GPU = job(1, 1).request


def fresh(nodes: tuple[NodeView, ...]) -> tuple[NodeView, ...]:
    """Equal views, new objects: what a server's next cycle builds."""
    return tuple(replace(n, gpus=tuple(replace(g) for g in n.gpus)) for n in nodes)


def test_the_same_shape_is_found_again_whatever_the_allocations() -> None:
    first = shape_of(CLUSTER)
    busy = (node("b", 8, busy=[0, 1, 2]), node("a", 8, busy=range(8)), node("c", 4))
    assert shape_of(busy) is first
    assert shape_of(fresh(CLUSTER)) is first  # by content, not by the view objects


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param((node("b", 8, state=NodeState.DRAINED), *CLUSTER[1:]), id="node-state"),
        pytest.param((node("b", 8, unhealthy=[3]), *CLUSTER[1:]), id="gpu-health"),
        pytest.param((node("b", 8, gpu_type="H100"), *CLUSTER[1:]), id="gpu-type"),
        pytest.param((node("b", 8, memory_mib=40_960), *CLUSTER[1:]), id="gpu-memory"),
        pytest.param(CLUSTER[:2], id="node-gone"),
        pytest.param((*CLUSTER, node("d", 8)), id="node-added"),
        pytest.param((CLUSTER[1], CLUSTER[0], CLUSTER[2]), id="node-order"),
        pytest.param((node("b", 4), *CLUSTER[1:]), id="gpu-count"),
    ],
)
def test_a_changed_node_set_makes_another_shape(changed: tuple[NodeView, ...]) -> None:
    before = shape_of(CLUSTER)
    after = shape_of(changed)
    assert after is not before
    assert after.key != before.key


def test_the_shape_says_what_the_nodes_say() -> None:
    nodes = (
        node("b", 8, unhealthy=[7]),
        node("a", 8, state=NodeState.DRAINED),
        mixed_node("m", ("A100-80GB", 81_920), ("h100", 81_920)),
    )
    found = shape_of(nodes)
    assert [nodes[i].name for i in found.order] == ["m", "a", "b"]  # GPU count, then name
    assert found.up == [True, False, True]
    assert found.capacity == 2 + 7  # healthy GPUs of up nodes
    assert found.single[0] == -1 and found.single[2] >= 0  # m mixes two kinds
    assert found.gpu_types[("m", 1)] == "h100"
    assert [sorted(u) for u in found.usable] == [[0, 1], list(range(7))]  # up nodes only


def test_a_pool_and_a_context_on_a_changed_cluster_see_the_change() -> None:
    up = (node("a", 8),)
    assert FreePool(up).capacity(ONE_GPU) == 8
    sick = (node("a", 8, unhealthy=[0, 1]),)
    assert FreePool(sick).capacity(ONE_GPU) == 6
    assert make_context(snapshot(*sick)).capacity == 6
    drained = (node("a", 8, state=NodeState.DRAINED),)
    assert make_context(snapshot(*drained)).capacity == 0
    assert FreePool(drained).up_count() == 0


def test_the_cache_keeps_a_bounded_number_of_shapes() -> None:
    for size in range(1, shape_module.SHAPES + 5):
        shape_of((node("a", size),))
    assert len(shape_module._SHAPES) <= shape_module.SHAPES
