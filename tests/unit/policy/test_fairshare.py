"""Water-filling and fair shares: floors, caps, borrow limits, nesting, over-commitment."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from scheduler.domain.snapshot import QueueView, TypeQuota
from scheduler.policy.fairshare import Claim, fair_shares, guarantee, type_quota, water_fill

BIG = 1_000.0  # demand well above any capacity here


@pytest.mark.parametrize(
    ("claims", "capacity", "expected"),
    [
        pytest.param(
            [Claim("a", 1, 0, 10), Claim("b", 3, 0, 10)], 8, {"a": 2, "b": 6}, id="docstring"
        ),
        pytest.param(
            [Claim("a", 1, 0, 3), Claim("b", 1, 0, 4)], 10, {"a": 3, "b": 4}, id="all-capped"
        ),
        pytest.param(
            [Claim("a", 1, 6, 10), Claim("b", 1, 0, 10)], 8, {"a": 6, "b": 2}, id="floor-wins"
        ),
        pytest.param(
            [Claim("a", 1, 6, 2), Claim("b", 1, 0, 10)], 8, {"a": 2, "b": 6}, id="floor>cap"
        ),
        pytest.param(
            [Claim("a", 1, 12, BIG), Claim("b", 1, 4, BIG)], 8, {"a": 6, "b": 2}, id="overcommit"
        ),
        pytest.param(
            [Claim("a", 1, 0, 1), Claim("b", 2, 0, BIG), Claim("c", 1, 0, BIG)],
            10,
            {"a": 1, "b": 6, "c": 3},
            id="cap-spills-to-others",
        ),
        pytest.param(
            [Claim("a", 0, 0, BIG), Claim("b", 1, 0, 4)], 10, {"a": 6, "b": 4}, id="zero-weight"
        ),
        pytest.param([], 10, {}, id="empty"),
    ],
)
def test_water_fill(claims: list[Claim], capacity: float, expected: dict[str, float]) -> None:
    shares = water_fill(claims, capacity)
    assert shares == pytest.approx(expected)


def test_water_fill_is_exact_not_approximate() -> None:
    claims = [Claim(name, w, 0, BIG) for name, w in (("a", 1), ("b", 2), ("c", 4))]
    shares = water_fill(claims, 7)
    assert sum(shares.values()) == pytest.approx(7, abs=1e-12)
    assert shares == pytest.approx({"a": 1, "b": 2, "c": 4}, abs=1e-12)


def _shares(
    queues: list[QueueView], demand: Mapping[str, float], capacity: float
) -> dict[str, float]:
    return fair_shares(queues, demand, capacity)


@pytest.mark.parametrize(
    ("queues", "demand", "capacity", "expected"),
    [
        pytest.param(
            [QueueView("A", guaranteed_gpus=8), QueueView("B"), QueueView("C", weight=2)],
            {"A": 2, "B": 20, "C": 20},
            16,
            {"A": 2, "B": 14 / 3, "C": 28 / 3},
            id="docstring: floor above demand",
        ),
        pytest.param(
            [QueueView("A", max_gpus=3), QueueView("B")],
            {"A": 20, "B": 20},
            16,
            {"A": 3, "B": 13},
            id="max_gpus caps",
        ),
        pytest.param(
            [QueueView("A", guaranteed_gpus=2, borrow_limit_gpus=1), QueueView("B")],
            {"A": 20, "B": 20},
            16,
            {"A": 3, "B": 13},
            id="borrow limit caps",
        ),
        pytest.param(
            [QueueView("A", guaranteed_gpus=12), QueueView("B", guaranteed_gpus=12)],
            {"A": 20, "B": 20},
            16,
            {"A": 8, "B": 8},
            id="over-committed guarantees shrink in proportion",
        ),
        pytest.param(
            [QueueView("A", guaranteed_gpus=16), QueueView("B", guaranteed_gpus=8)],
            {"A": 20, "B": 20},
            16,
            {"A": 32 / 3, "B": 16 / 3},
            id="over-committed, unequal",
        ),
        pytest.param(
            [QueueView("A"), QueueView("B")],
            {"A": 3, "B": 0},
            16,
            {"A": 3, "B": 0},
            id="no demand gets nothing",
        ),
        pytest.param(
            [QueueView("A", type_quotas=(TypeQuota("A100", guaranteed_gpus=6),)), QueueView("B")],
            {"A": 20, "B": 20},
            8,
            {"A": 6, "B": 2},
            id="type guarantees raise the floor",
        ),
    ],
)
def test_fair_shares_flat(
    queues: list[QueueView], demand: dict[str, float], capacity: float, expected: dict[str, float]
) -> None:
    assert _shares(queues, demand, capacity) == pytest.approx(expected)


ORG = [
    QueueView("ml"),
    QueueView("a", parent="ml"),
    QueueView("b", weight=3, parent="ml"),
    QueueView("c"),
]


@pytest.mark.parametrize(
    ("queues", "demand", "expected"),
    [
        pytest.param(
            ORG,
            {"a": BIG, "b": BIG, "c": BIG},
            {"ml": 8, "a": 2, "b": 6, "c": 8},
            id="org share split among teams by weight",
        ),
        pytest.param(
            ORG,
            {"a": 1, "b": BIG, "c": BIG},
            {"ml": 8, "a": 1, "b": 7, "c": 8},
            id="idle share stays in the org",
        ),
        pytest.param(
            [QueueView("ml", guaranteed_gpus=12), *ORG[1:]],
            {"a": BIG, "b": BIG, "c": BIG},
            {"ml": 12, "a": 3, "b": 9, "c": 4},
            id="org guarantee is the org's floor",
        ),
        pytest.param(
            [
                QueueView("ml"),
                QueueView("a", guaranteed_gpus=8, parent="ml"),
                QueueView("b", parent="ml"),
                QueueView("c", weight=3),
            ],
            {"a": 0, "b": BIG, "c": BIG},
            {"ml": 4, "a": 0, "b": 4, "c": 12},
            id="an idle child's guarantee does not raise the org's floor",
        ),
        pytest.param(
            [QueueView("a", parent="gone"), QueueView("c")],
            {"a": BIG, "c": BIG},
            {"a": 8, "c": 8},
            id="child of an unlisted org is top-level",
        ),
    ],
)
def test_fair_shares_nested(
    queues: list[QueueView], demand: dict[str, float], expected: dict[str, float]
) -> None:
    assert _shares(queues, demand, 16) == pytest.approx(expected)


@pytest.mark.parametrize("capacity", [0, 1, 5, 16, 40, 1_000])
def test_work_conserving_and_never_above_capacity(capacity: float) -> None:
    queues = [
        QueueView("ml", max_gpus=30),
        QueueView("a", guaranteed_gpus=4, parent="ml"),
        QueueView("b", weight=2, borrow_limit_gpus=6, parent="ml"),
        QueueView("c", guaranteed_gpus=10, max_gpus=12),
        QueueView("d", weight=0.5),
    ]
    demand = {"a": 20, "b": 20, "c": 20, "d": 7}
    shares = _shares(queues, demand, capacity)
    top = shares["ml"] + shares["c"] + shares["d"]
    caps = min(30, 20 + 6) + 12 + 7  # ml: its cap or a's 20 + b's borrow-capped 6; c; d
    assert top == pytest.approx(min(capacity, caps))
    assert shares["a"] + shares["b"] == pytest.approx(shares["ml"])


def test_guarantee_and_type_quota_lookup() -> None:
    queue = QueueView(
        "prod",
        guaranteed_gpus=4,
        type_quotas=(TypeQuota("A100-80GB", guaranteed_gpus=6), TypeQuota("H100", max_gpus=2)),
    )
    assert guarantee(queue) == 6
    assert type_quota(queue, "a100-80gb") == TypeQuota("A100-80GB", guaranteed_gpus=6)
    assert type_quota(queue, None) is None
    assert type_quota(queue, "V100") is None
