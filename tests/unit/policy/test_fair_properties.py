"""Properties over random inputs: water-filling bounds, orderings, reclaim's safety rules."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.domain.decisions import Decisions, Wait, WaitReason
from scheduler.domain.snapshot import PendingJob, QueueView, RunningJob, Snapshot
from scheduler.policy.context import PolicyParams, make_context
from scheduler.policy.fairshare import Claim, fair_shares, guarantee, water_fill
from scheduler.policy.orderings import drf, fair_share, fifo, las, multifactor
from scheduler.policy.placement import best_fit
from scheduler.policy.preemption import reclaim
from tests.unit.policy.fair_builders import NOW, cluster, context, pending, running

PARAMS = PolicyParams(min_runtime_s=300.0)
QUEUES = ("a", "b", "c", "d")

claims = st.lists(
    st.builds(
        Claim,
        name=st.uuids().map(str),
        weight=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
        floor=st.integers(0, 20).map(float),
        cap=st.integers(0, 40).map(float),
    ),
    max_size=8,
    unique_by=lambda c: c.name,
)


@given(claims, st.integers(0, 100).map(float))
def test_water_fill_bounds_and_work_conservation(cs: list[Claim], capacity: float) -> None:
    shares = water_fill(cs, capacity)
    assert sum(shares.values()) == pytest.approx(min(capacity, sum(c.cap for c in cs)), abs=1e-6)
    floors_fit = sum(min(c.floor, c.cap) for c in cs) <= capacity
    for c in cs:
        assert -1e-9 <= shares[c.name] <= c.cap + 1e-6
        if floors_fit:
            assert shares[c.name] >= min(c.floor, c.cap) - 1e-6


@st.composite
def queue_views(draw: st.DrawFn) -> list[QueueView]:
    org = QueueView("org", guaranteed_gpus=draw(st.integers(0, 6)))
    views = [org]
    for name in QUEUES:
        views.append(
            QueueView(
                name,
                weight=draw(st.sampled_from([0.5, 1.0, 2.0])),
                guaranteed_gpus=draw(st.sampled_from([0, 0, 2, 4, 8])),
                max_gpus=draw(st.sampled_from([None, None, 6, 12])),
                parent="org" if name in ("c", "d") and draw(st.booleans()) else None,
                usage_gpu_s=draw(st.sampled_from([0.0, 1e4])),
            )
        )
    return views


@given(
    queue_views(), st.dictionaries(st.sampled_from(QUEUES), st.integers(0, 30)), st.integers(0, 40)
)
def test_fair_shares_never_exceed_capacity(
    views: list[QueueView], demand: dict[str, int], capacity: int
) -> None:
    shares = fair_shares(views, {k: float(v) for k, v in demand.items()}, capacity)
    top = [v.name for v in views if v.parent is None]
    assert sum(shares[name] for name in top) <= capacity + 1e-6
    for name in QUEUES:
        assert shares[name] <= demand.get(name, 0) + 1e-6


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    nodes = [(f"n{i}", draw(st.sampled_from([4, 8]))) for i in range(draw(st.integers(1, 3)))]
    held: list[RunningJob] = []
    job_id = 1
    for name, size in nodes:
        index = 0
        while index < size and draw(st.integers(0, 4)) > 0:
            gpus = min(size - index, draw(st.integers(1, 4)))
            held.append(
                running(
                    job_id,
                    draw(st.sampled_from(QUEUES)),
                    name,
                    range(index, index + gpus),
                    priority=draw(st.integers(0, 2)),
                    started_at=NOW - draw(st.sampled_from([10.0, 299.0, 300.0, 5_000.0])),
                    preemptible=draw(st.booleans()) or draw(st.booleans()),
                    last_checkpoint_at=draw(st.sampled_from([None, NOW - 50.0])),
                    stopping=draw(st.integers(0, 5)) == 0,
                )
            )
            index += gpus
            job_id += 1
    waiting: list[PendingJob] = [
        pending(
            100 + i,
            draw(st.sampled_from(QUEUES)),
            draw(st.sampled_from([1, 2, 4, 8])),
            preemptible=draw(st.booleans()),
        )
        for i in range(draw(st.integers(0, 5)))
    ]
    return cluster(nodes, queues=draw(queue_views()), pending_jobs=waiting, running_jobs=held)


def _all_wait(snapshot: Snapshot) -> Decisions:
    waits = tuple(Wait(j.job_id, WaitReason.INSUFFICIENT_GPUS, "w") for j in snapshot.pending)
    return Decisions(waits=waits)


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_reclaim_never_breaks_its_safety_rules(snapshot: Snapshot) -> None:
    ctx = context(snapshot, PARAMS)
    preemptions = reclaim(ctx, _all_wait(snapshot), best_fit)
    attempts = {r.attempt_id: r for r in snapshot.running}
    chosen = [attempts[p.attempt_id] for p in preemptions]
    assert len({r.attempt_id for r in chosen}) == len(chosen)  # each attempt once
    for victim in chosen:
        assert victim.preemptible
        assert not victim.stopping
        assert NOW - victim.started_at >= PARAMS.min_runtime_s
    lost = Counter[str]()
    for victim in chosen:
        lost[victim.queue] += len(victim.gpus)
    for queue, gpus in lost.items():
        state = ctx.queues[queue]
        assert state.held - gpus >= guarantee(state.view)  # only borrowed GPUs are taken


@settings(max_examples=100, deadline=None)
@given(snapshots())
def test_reclaim_is_deterministic(snapshot: Snapshot) -> None:
    first = reclaim(context(snapshot, PARAMS), _all_wait(snapshot), best_fit)
    assert reclaim(context(snapshot, PARAMS), _all_wait(snapshot), best_fit) == first


@settings(max_examples=100, deadline=None)
@given(snapshots())
def test_orderings_are_deterministic_permutations(snapshot: Snapshot) -> None:
    expected = sorted(j.job_id for j in snapshot.pending)
    for ordering in (fair_share, fifo, las, drf, multifactor):
        order = [j.job_id for j in ordering(make_context(snapshot))]
        assert sorted(order) == expected
        assert [j.job_id for j in ordering(make_context(snapshot))] == order
