"""What a cycle remembers of the views of earlier cycles, and why it never misleads it.

The pool's free and held GPUs per node view, the timeline's GPU holders per node view
and an attempt's GPUs by node, the context's GPU types per attempt view: each is kept
by the view's id with the view itself, and used only for that very object (views are
immutable). A changed node or attempt is a new object and is worked out anew; an id
that a new object shares with an old one never serves the old answer. The breakpoint
search of the fair shares looks at a few breakpoints where it used to compute all of
them: it must find the very same water level.
"""

from __future__ import annotations

import random

from scheduler.domain.snapshot import GpuRef
from scheduler.policy import context, pool, timeline
from scheduler.policy.context import make_context
from scheduler.policy.fairshare import Claim, _filled, _water_level
from scheduler.policy.pool import FreePool
from scheduler.policy.timeline import Timeline, _gpus_by_node, _holders_of

from .factories import job, node, running, snapshot

HOLDER = 7


def test_the_pool_reads_each_new_view_of_a_node() -> None:
    before = node("a", 8, busy=[0, 1])
    after = node("a", 8, busy=[0, 1, 2, 3])  # the same node, two more GPUs taken
    assert FreePool((before,)).most_free(job(1, gpus=1).request) == 6
    assert FreePool((after,)).most_free(job(1, gpus=1).request) == 4
    assert FreePool((before,)).most_free(job(1, gpus=1).request) == 6


def test_an_id_shared_with_a_remembered_view_is_not_its_answer() -> None:
    """Planted: an answer for another object under this view's id (as if the id had been
    reused): the check of identity rejects it."""
    view = node("a", 8, busy=[0, 1])
    other = node("a", 8)
    pool._FREE_AND_HELD[id(view)] = (other, (frozenset(range(8)), frozenset()))
    timeline._HOLDERS[id(view)] = (other, ([], [], {}))
    try:
        assert pool._free_and_held(view) == (frozenset(range(2, 8)), frozenset({0, 1}))
        indices, holders, by_index = _holders_of(view)
        assert indices == list(range(8)) and holders[:3] == [by_index[0], by_index[1], None]
        assert by_index[0] is not None and by_index[2] is None
    finally:
        pool._FREE_AND_HELD.pop(id(view), None)
        timeline._HOLDERS.pop(id(view), None)


def test_an_attempt_view_is_read_for_its_own_gpus() -> None:
    first = running(HOLDER, "a:0", "b:1", "a:2")
    moved = running(HOLDER, "b:3")
    assert _gpus_by_node(first) == (("a", (0, 2)), ("b", (1,)))
    assert _gpus_by_node(moved) == (("b", (3,)),)
    timeline._BY_NODE[id(moved)] = (first, (("a", (0,)),))  # planted, as above
    assert _gpus_by_node(moved) == (("b", (3,)),)


def test_held_gpus_by_type_follow_the_nodes_shape() -> None:
    """The same attempt view on a node whose GPUs changed type: counted by the new type."""
    attempt = running(HOLDER, "a:0", "a:1", queue="q")
    a100 = snapshot(node("a", 2, gpu_type="A100"), running=[attempt])
    h100 = snapshot(node("a", 2, gpu_type="H100"), running=[attempt])
    assert make_context(a100).queue("q").held_by_type == {"a100": 2}
    assert make_context(h100).queue("q").held_by_type == {"h100": 2}
    assert make_context(a100).queue("q").held_by_type == {"a100": 2}
    assert context._types_held(attempt, {("a", 0): "X"}) == (("X", 1), (None, 1))


def test_early_gpus_are_noted_for_the_queue_that_asks() -> None:
    """A preemptible attempt of ``q`` past its minimum runtime counts free now for others,
    at its time limit (never: none) for ``q``'s own jobs, whichever asks first."""
    attempt = running(
        HOLDER, *(f"a:{i}" for i in range(8)), preemptible=True, started_at=0.0, queue="q"
    )
    snap = snapshot(node("a", 8), running=[attempt])
    request = job(1, gpus=8).request
    for order in (("q", "r"), ("r", "q")):
        line = Timeline(snap, make_context(snap).params)
        found = {queue: line.earliest(request, queue) for queue in order}
        assert found["r"] is not None and found["r"].at == snap.now
        assert found["q"] is not None and found["q"].at == float("inf")
        assert found["q"].gpus == tuple(GpuRef("a", i) for i in range(8))


def test_the_water_level_is_found_as_when_every_breakpoint_was_computed() -> None:
    rng = random.Random(5)
    for _ in range(300):
        claims = [
            Claim(f"q{i}", rng.choice((0.0, 0.5, 1.0, 3.0)), rng.randint(0, 20), rng.randint(0, 60))
            for i in range(rng.randint(1, 12))
        ]
        caps = {c.name: max(0.0, c.cap) for c in claims}
        floors = {c.name: min(max(0.0, c.floor), caps[c.name]) for c in claims}
        capacity = float(rng.randint(1, 200))
        if not sum(floors.values()) < capacity < sum(caps.values()):
            continue
        assert _water_level(claims, floors, caps, capacity) == _every_breakpoint(
            claims, floors, caps, capacity
        )


def _every_breakpoint(
    claims: list[Claim], floors: dict[str, float], caps: dict[str, float], capacity: float
) -> float:
    """The search as it was: the filled total at every breakpoint, then bisect."""
    from bisect import bisect_left

    from scheduler.policy.fairshare import _weight

    points = sorted(
        {0.0} | {v / _weight(c) for c in claims for v in (floors[c.name], caps[c.name])}
    )
    filled = [_filled(claims, floors, caps, p) for p in points]
    upper = min(bisect_left(filled, capacity), len(points) - 1)
    if upper == 0 or filled[upper] <= filled[upper - 1]:
        return points[upper]
    low, high = points[upper - 1], points[upper]
    fraction = (capacity - filled[upper - 1]) / (filled[upper] - filled[upper - 1])
    return low + fraction * (high - low)
