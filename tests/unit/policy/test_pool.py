"""FreePool: take, release, withhold and copy, table by table; then its indexed queries
against the brute-force reference on plain views, over random pools and operations."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import GpuRef, NodeView, PendingJob
from scheduler.domain.status import NodeState
from scheduler.policy.explain import explain_wait
from scheduler.policy.placement import best_fit
from scheduler.policy.pool import FreePool

from . import reference
from .factories import free_only, job, mixed_node, node

ANY = job(1, 1).request
WITHHELD = -1  # the reference marks a withheld GPU as allocated to this job id


def refs(*texts: str) -> tuple[GpuRef, ...]:
    return tuple(GpuRef(t.split(":")[0], int(t.split(":")[1])) for t in texts)


def free(pool: FreePool, name: str) -> tuple[int, ...]:
    return pool.free_indices(name, ANY)


@dataclass(frozen=True)
class Step:
    id: str
    nodes: tuple[NodeView, ...]
    action: str  # take, release or withhold
    gpus: tuple[GpuRef, ...]
    free_after: dict[str, tuple[int, ...]]
    idle_after: tuple[str, ...]  # idle up nodes, in (GPU count, name) order


STEPS = [
    Step("take", (node("a", 4), node("b", 2)), "take", refs("a:1", "a:3"),
         {"a": (0, 2), "b": (0, 1)}, ("b",)),
    Step("take a whole node", (node("a", 2),), "take", refs("a:0", "a:1"), {"a": ()}, ()),
    Step("release a busy GPU", (free_only("a", 4, [0]),), "release", refs("a:1", "a:2"),
         {"a": (0, 1, 2)}, ()),
    Step("release the last busy GPU: idle again", (free_only("a", 2, [0]),), "release",
         refs("a:1"), {"a": (0, 1)}, ("a",)),
    Step("release an unhealthy GPU: idle, not free", (node("a", 2, busy=[1], unhealthy=[1]),),
         "release", refs("a:1"), {"a": (0,)}, ("a",)),
    Step("release on a drained node frees nothing",
         (node("d", 2, busy=[0], state=NodeState.DRAINED),), "release", refs("d:0"), {"d": ()}, ()),
    Step("withhold a free GPU", (node("a", 4),), "withhold", refs("a:2"), {"a": (0, 1, 3)}, ()),
    Step("withhold a busy GPU: no change", (free_only("a", 2, [0]),), "withhold", refs("a:1"),
         {"a": (0,)}, ()),
]  # fmt: skip


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.id)
def test_a_step_changes_the_pool_and_nothing_else(step: Step) -> None:
    pool = FreePool(step.nodes)
    before = pool.copy()
    if step.action == "take":
        pool.take(Placement(7, tuple(sorted({r.node for r in step.gpus})), step.gpus))
    else:
        getattr(pool, step.action)(step.gpus)
    assert {n.name: free(pool, n.name) for n in step.nodes} == {
        n.name: step.free_after.get(n.name, free(before, n.name)) for n in step.nodes
    }
    no_gpu = job(1, 0).request  # every idle node holds it
    assert tuple(name for name, _ in pool.idle_nodes(no_gpu, 99)) == step.idle_after
    assert pool.idle_holders(no_gpu) == len(step.idle_after)


def test_release_refuses_a_free_gpu() -> None:
    pool = FreePool((free_only("a", 4, [0]),))
    with pytest.raises(ValueError, match=r"GPUs \[0\] of a not allocated"):
        pool.release(refs("a:0", "a:1"))
    assert free(pool, "a") == (0,)  # nothing released


def test_release_skips_gpus_the_snapshot_does_not_show() -> None:
    pool = FreePool((free_only("a", 4, [0]),))
    pool.release(refs("a:9", "x:0", "a:1"))  # a GPU gone from its node, a node gone
    assert free(pool, "a") == (0, 1)


@pytest.mark.parametrize("gpus", [refs("a:9"), refs("x:0")])
def test_withhold_refuses_an_unknown_gpu(gpus: tuple[GpuRef, ...]) -> None:
    with pytest.raises(ValueError, match="no such GPU"):
        FreePool((node("a", 4),)).withhold(gpus)


def test_a_copy_is_independent_both_ways() -> None:
    pool = FreePool((node("a", 8), free_only("b", 8, [5, 7])))
    assert pool.tightest(ANY) == ("b", (5,))  # builds the index before copying
    other = pool.copy()
    other.take(Placement(1, ("b",), refs("b:5", "b:7")))
    assert pool.tightest(ANY) == ("b", (5,))
    assert other.tightest(ANY) == ("a", (0,))
    pool.take(Placement(2, ("a",), refs("a:0")))
    assert other.free_indices("a", ANY) == tuple(range(8))
    other.release(refs("b:0"))
    assert pool.free_indices("b", ANY) == (5, 7)


def test_the_worked_example_of_the_module() -> None:
    pool = FreePool((node("a", 8), free_only("b", 8, [5, 7]), node("h", 4, gpu_type="H100")))
    two, two_a100 = job(1, 2).request, job(1, 2, gpu_type="a100-80gb").request
    assert pool.tightest(two) == ("b", (5, 7))
    pool.take(Placement(1, ("b",), refs("b:5", "b:7")))
    assert pool.tightest(two) == ("h", (0, 1))
    assert pool.tightest(two_a100) == ("a", (0, 1))


def test_mixed_nodes_count_only_the_matching_gpus() -> None:
    mixed = mixed_node("m", ("A100-40GB", 40_960), ("A100-80GB", 81_920), ("A100-80GB", 81_920))
    pool = FreePool((mixed,))
    big = job(1, 2, gpu_memory_mib=50_000).request
    assert pool.tightest(big) == ("m", (1, 2))
    assert pool.most_free(big) == 2 and pool.most_free(ANY) == 3
    pool.take(Placement(1, ("m",), refs("m:2")))
    assert pool.tightest(big) is None
    assert pool.most_free(big) == 1 and pool.free_indices("m", big) == (1,)


# -- random pools against the reference ---------------------------------------------


def random_views(rng: random.Random) -> list[NodeView]:
    views = []
    for n in range(rng.randint(0, 9)):
        kind = rng.choice((("A100-80GB", 81_920), ("H100", 81_920), ("A100-40GB", 40_960)))
        mixed = rng.random() < 0.2
        gpus = [
            kind if not mixed or i % 2 else ("H100", 81_920)
            for i in range(rng.choice((0, 1, 2, 4, 8)))
        ]
        view = mixed_node(
            f"n{n}", *gpus, state=rng.choice((NodeState.UP,) * 4 + (NodeState.DRAINED,))
        )
        views.append(
            replace(
                view,
                gpus=tuple(
                    replace(
                        g,
                        healthy=rng.random() > 0.1,
                        allocated_to=900 if rng.random() < 0.4 else None,
                    )
                    for g in view.gpus
                ),
            )
        )
    return views


def random_request_job(rng: random.Random, job_id: int) -> PendingJob:
    nodes = rng.choice((1, 1, 1, 2, 3))
    return job(
        job_id,
        rng.choice((1, 2, 4)) if nodes > 1 else rng.choice((0, 1, 1, 2, 3, 4, 8)),
        nodes,
        gpu_type=rng.choice((None, None, "A100-80GB", "h100", "V100")),
        gpu_memory_mib=rng.choice((None, None, 50_000, 81_920)),
    )


def set_allocation(views: list[NodeView], gpus: list[GpuRef], owner: int | None) -> list[NodeView]:
    wanted = {(r.node, r.index) for r in gpus}
    return [
        replace(
            v,
            gpus=tuple(
                replace(g, allocated_to=owner) if (v.name, g.index) in wanted else g for g in v.gpus
            ),
        )
        for v in views
    ]


def step_both(rng: random.Random, pool: FreePool, views: list[NodeView], i: int) -> list[NodeView]:
    """One random take (of the reference's best fit), release or withhold, on both."""
    action = rng.choice(("take", "take", "release", "withhold"))
    if action == "take":
        placement = reference.best_fit(random_request_job(rng, i), views)
        if placement is not None:
            pool.take(placement)
            return list(reference.claim(views, placement))
        return views
    gpus = [GpuRef(v.name, g.index) for v in views for g in v.gpus]
    if action == "release":
        busy = [
            r
            for r in gpus
            if next(g for g in views_of(views, r.node).gpus if g.index == r.index).allocated_to
        ]
        chosen = rng.sample(busy, min(len(busy), 2))
        pool.release(chosen)
        return set_allocation(views, chosen, None)
    chosen = rng.sample(gpus, min(len(gpus), 2))
    pool.withhold(chosen)
    return set_allocation(views, chosen, WITHHELD)


def views_of(views: list[NodeView], name: str) -> NodeView:
    return next(v for v in views if v.name == name)


@pytest.mark.parametrize("seed", range(150))
def test_queries_agree_with_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    views = random_views(rng)
    pool = FreePool(views)
    copies = []
    for i in range(12):
        for _ in range(6):
            probe = random_request_job(rng, 100 + i)
            assert best_fit(probe, pool) == reference.best_fit(probe, views)
            if best_fit(probe, pool) is None:
                wait = explain_wait(probe, pool)
                assert (wait.reason, wait.message) == reference.explain(probe, views)
        if rng.random() < 0.3:
            copies.append((pool.copy(), list(views)))
        views = step_both(rng, pool, views, i)
    for copied, copied_views in copies:  # later steps did not leak into the copies
        for j in range(6):
            probe = random_request_job(rng, 500 + j)
            assert best_fit(probe, copied) == reference.best_fit(probe, copied_views)
