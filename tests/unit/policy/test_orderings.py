"""Orderings over a context: fair_share, fifo, las, drf, multifactor."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from scheduler.domain.snapshot import PendingJob, QueueView, RunningJob, Snapshot
from scheduler.policy.context import Context, PolicyParams, make_context
from scheduler.policy.orderings import MULTIFACTOR_WEIGHTS, drf, fair_share, fifo, las, multifactor
from tests.unit.policy.fair_builders import NOW, cluster, pending, running

Ordering = Callable[[Context], list[PendingJob]]
ALL = [fair_share, fifo, las, drf, multifactor]


def _ids(ordering: Ordering, snapshot: Snapshot) -> list[int]:
    return [j.job_id for j in ordering(make_context(snapshot))]


def _snap(
    queues: Sequence[QueueView],
    jobs: Sequence[PendingJob],
    held: Sequence[RunningJob] = (),
    gpus: int = 16,
) -> Snapshot:
    return cluster([("n", gpus)], queues=queues, pending_jobs=jobs, running_jobs=held)


def _queues_of(order: Sequence[PendingJob]) -> str:
    return "".join(j.queue for j in order)


# --- fair_share ---------------------------------------------------------------------


def test_fair_share_interleaves_by_weight_docstring_example() -> None:
    jobs = [pending(i, "A") for i in range(12)] + [pending(100 + i, "B") for i in range(12)]
    snap = _snap([QueueView("A", weight=2), QueueView("B", weight=1)], jobs, gpus=12)
    order = fair_share(make_context(snap))
    assert _queues_of(order[:8]) == "ABAABAAB"
    assert Counter(j.queue for j in order[:12]) == {"A": 8, "B": 4}


@pytest.mark.parametrize(("weights", "picks"), [((2, 1), 30), ((3, 1), 40), ((1, 1), 20)])
def test_fair_share_gpus_in_proportion_to_weights(weights: tuple[int, int], picks: int) -> None:
    queues = [QueueView("A", weight=weights[0]), QueueView("B", weight=weights[1])]
    jobs = [pending(i, "A", gpus=2) for i in range(100)]
    jobs += [pending(1_000 + i, "B", gpus=1) for i in range(200)]
    order = fair_share(make_context(_snap(queues, jobs, gpus=64)))
    gpus: Counter[str] = Counter()
    for job in order[:picks]:
        gpus[job.queue] += job.request.total_gpus
    ratio = gpus["A"] / gpus["B"]
    assert ratio == pytest.approx(weights[0] / weights[1], rel=0.15)


def test_fair_share_serves_the_largest_deficit_first() -> None:
    queues = [QueueView("A"), QueueView("B")]
    held = [running(50, "A", "n", range(6))]  # A holds 6 of its share of 8, B none
    jobs = [pending(1, "A", gpus=10), pending(2, "B", gpus=10, submitted_at=99)]
    # shares 8 and 8: deficits A 2, B 8
    assert _ids(fair_share, _snap(queues, jobs, held)) == [2, 1]


@pytest.mark.parametrize(
    ("usage_a", "usage_b", "expected"),
    [(100.0, 10.0, [2, 1]), (10.0, 100.0, [1, 2]), (0.0, 0.0, [1, 2])],
    ids=["B used less", "A used less", "equal: name"],
)
def test_fair_share_ties_by_decayed_usage_then_name(
    usage_a: float, usage_b: float, expected: list[int]
) -> None:
    queues = [QueueView("A", usage_gpu_s=usage_a), QueueView("B", usage_gpu_s=usage_b)]
    assert _ids(fair_share, _snap(queues, [pending(1, "A"), pending(2, "B")])) == expected


def test_fair_share_inside_a_queue_priority_then_attained_then_age_then_id() -> None:
    jobs = [
        pending(1, "A", submitted_at=5.0),
        pending(2, "A", priority=1, attained_gpu_s=900.0),
        pending(3, "A", attained_gpu_s=10.0, submitted_at=1.0),
        pending(4, "A", submitted_at=5.0),
        pending(5, "A", submitted_at=2.0),
        pending(6, "A", priority=1),
    ]
    assert _ids(fair_share, _snap([QueueView("A")], jobs)) == [6, 2, 5, 1, 4, 3]


def test_fair_share_keeps_jobs_in_backoff() -> None:
    jobs = [pending(1, "A", not_before=NOW + 60), pending(2, "A")]
    assert _ids(fair_share, _snap([QueueView("A")], jobs)) == [1, 2]


def test_fair_share_org_deficit_is_considered_before_its_teams() -> None:
    # shares ml 8 (a 4, b 4), c 8. ml holds 8 through a: org deficit 0; c holds 5:
    # deficit 3. Flat, b's deficit (4) would beat c's; nested, c goes first.
    queues = [QueueView("ml"), QueueView("a", parent="ml"), QueueView("b", parent="ml")]
    queues.append(QueueView("c"))
    held = [running(50, "a", "n", range(8)), running(51, "c", "n", range(8, 13))]
    jobs = [pending(1, "b", gpus=8), pending(2, "c", gpus=8), pending(3, "a", gpus=8)]
    order = fair_share(make_context(_snap(queues, jobs, held, gpus=16)))
    assert [j.job_id for j in order][:1] == [2]
    assert {j.job_id for j in order} == {1, 2, 3}


def _owed_case(extra: Sequence[PendingJob] = ()) -> Snapshot:
    """16 GPUs: A (guarantee 4) holds 3, B (weight 4) 5, C 8 of its share of 2.4, not
    preemptible. Shares A 4, B 9.6: A is owed a GPU; B is further below its share
    (normalised deficits 1.0 and 1.15)."""
    queues = [QueueView("A", guaranteed_gpus=4), QueueView("B", weight=4), QueueView("C")]
    held = [
        running(50, "A", "n", range(3)),
        running(51, "B", "n", range(3, 8)),
        running(52, "C", "n", range(8, 16), preemptible=False),
    ]
    jobs = [pending(1, "A"), *[pending(i, "B") for i in range(2, 8)], *extra]
    return _snap(queues, jobs, held)


def test_fair_share_serves_a_queue_owed_its_guarantee_first() -> None:
    ctx = make_context(_owed_case())
    assert ctx.queues["A"].fair_share == pytest.approx(4.0)
    assert ctx.queues["B"].fair_share == pytest.approx(9.6)
    assert [j.job_id for j in fair_share(ctx)] == [1, 2, 3, 4, 5, 6, 7]


def test_fair_share_owed_jobs_are_those_within_the_guarantee() -> None:
    # A's older 2-GPU job would take A past its guarantee: only the 1-GPU job is owed;
    # the 2-GPU one then goes by deficit, charged with it: key (4 - 4) / 1 = 0, after
    # B's jobs below its share, before B's next at (10 - 9.6) / 4
    snap = _owed_case([pending(9, "A", gpus=2, submitted_at=0.5)])
    assert _ids(fair_share, snap) == [1, 2, 3, 4, 5, 6, 9, 7]


def test_fair_share_does_not_mutate_the_context() -> None:
    ctx = make_context(_snap([QueueView("A")], [pending(1, "A", gpus=4)]))
    before = {name: (s.held, s.fair_share) for name, s in ctx.queues.items()}
    fair_share(ctx)
    assert {name: (s.held, s.fair_share) for name, s in ctx.queues.items()} == before


# --- baselines ----------------------------------------------------------------------


def test_fifo_ignores_priority() -> None:
    jobs = [pending(3, submitted_at=1.0, priority=9), pending(1, submitted_at=2.0)]
    jobs.append(pending(2, submitted_at=1.0))
    assert _ids(fifo, _snap([], jobs)) == [2, 3, 1]


def test_las_bands_by_attained_service_fifo_inside() -> None:
    jobs = [
        pending(1, attained_gpu_s=5_000.0, submitted_at=1.0),  # band 1
        pending(2, attained_gpu_s=3_599.0, submitted_at=3.0),  # band 0
        pending(3, attained_gpu_s=0.0, submitted_at=2.0),  # band 0
        pending(4, attained_gpu_s=40_000.0, submitted_at=0.0),  # band 2
        pending(5, attained_gpu_s=3_600.0, submitted_at=2.0),  # band 1 (at the threshold)
    ]
    assert _ids(las, _snap([], jobs)) == [3, 2, 1, 5, 4]


def test_las_uses_the_thresholds_of_the_params() -> None:
    jobs = [pending(1, attained_gpu_s=50.0), pending(2, attained_gpu_s=0.0)]
    ctx = make_context(_snap([], jobs), PolicyParams(las_thresholds_gpu_s=(10.0,)))
    assert [j.job_id for j in las(ctx)] == [2, 1]


def test_drf_serves_the_least_gpus_held_per_weight() -> None:
    queues = [QueueView("A", weight=2), QueueView("B")]
    held = [running(50, "A", "n", range(4)), running(51, "B", "n", range(4, 7))]
    jobs = [pending(1, "B", priority=5), pending(2, "A")]
    # dominant shares per weight: A 4 / 16 / 2 = 0.125, B 3 / 16 = 0.1875: A first
    assert _ids(drf, _snap(queues, jobs, held)) == [2, 1]


def test_drf_is_progressive() -> None:
    queues = [QueueView("A"), QueueView("B")]
    jobs = [pending(i, "A") for i in range(1, 4)] + [pending(i, "B") for i in range(11, 14)]
    order = drf(make_context(_snap(queues, jobs)))
    assert _queues_of(order) == "ABABAB"


def test_multifactor_priority_dominates_then_fair_share() -> None:
    queues = [QueueView("busy", usage_gpu_s=1e6), QueueView("idle")]
    jobs = [pending(1, "busy", priority=1), pending(2, "idle"), pending(3, "busy")]
    assert _ids(multifactor, _snap(queues, jobs)) == [1, 2, 3]


def test_multifactor_age_and_size() -> None:
    old = pending(1, submitted_at=NOW - 7 * 86_400)
    big = pending(2, gpus=16, submitted_at=NOW)
    young = pending(3, submitted_at=NOW)
    assert _ids(multifactor, _snap([QueueView("default")], [young, big, old])) == [1, 2, 3]
    assert MULTIFACTOR_WEIGHTS.age > MULTIFACTOR_WEIGHTS.job_size


# --- every ordering -----------------------------------------------------------------


def _random_snapshot(seed: int, jobs: int, queues: int = 7) -> Snapshot:
    rng = random.Random(seed)
    views = [QueueView(f"org{i}") for i in range(2)]
    views += [
        QueueView(
            f"q{i}",
            weight=rng.choice([0.5, 1, 2, 3]),
            guaranteed_gpus=rng.choice([0, 0, 4]),
            parent=rng.choice([None, "org0", "org1"]),
            usage_gpu_s=rng.choice([0.0, 1e3, 1e5]),
        )
        for i in range(queues)
    ]
    pend = [
        pending(
            i,
            f"q{rng.randrange(queues)}",
            gpus=rng.choice([0, 1, 2, 4, 8]),
            priority=rng.randrange(3),
            submitted_at=rng.uniform(0, NOW),
            attained_gpu_s=rng.choice([0.0, 5e3, 5e4]),
        )
        for i in range(jobs)
    ]
    return _snap(views, pend, gpus=64)


@pytest.mark.parametrize("ordering", ALL, ids=lambda o: o.__name__)
@pytest.mark.parametrize("seed", range(5))
def test_every_ordering_is_a_deterministic_permutation(ordering: Ordering, seed: int) -> None:
    snap = _random_snapshot(seed, 300)
    first = _ids(ordering, snap)
    assert sorted(first) == sorted(j.job_id for j in snap.pending)
    assert _ids(ordering, snap) == first


@pytest.mark.parametrize("ordering", ALL, ids=lambda o: o.__name__)
def test_every_ordering_orders_50000_jobs(ordering: Ordering) -> None:
    snap = _random_snapshot(7, 50_000, queues=100)
    assert len(set(_ids(ordering, snap))) == 50_000


@pytest.mark.parametrize("ordering", ALL, ids=lambda o: o.__name__)
def test_every_ordering_handles_no_jobs(ordering: Ordering) -> None:
    assert _ids(ordering, _snap([QueueView("A")], [])) == []
