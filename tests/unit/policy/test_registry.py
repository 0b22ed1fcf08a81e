"""The registries: every composition decides; unknown names are refused by name."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from typing import Any

import pytest

import scheduler.policy as policy_package
from scheduler.domain.decisions import Decisions
from scheduler.policy.context import PolicyParams
from scheduler.policy.registry import (
    ADMISSIONS,
    BACKFILLS,
    ORDERINGS,
    PLACEMENTS,
    PREEMPTIONS,
    make_policy,
)

from .factories import free_only, job, node, snapshot

SAMPLE = snapshot(
    node("a", 8),
    free_only("b", 8, [2, 3]),
    node("c", 4, gpu_type="H100"),
    pending=[
        job(1, 4),
        job(2, 2, priority=5),
        job(3, 8, nodes=2),
        job(4, 0),
        job(5, 1, gpu_type="V100"),
    ],
)

COMBINATIONS = list(itertools.product(ORDERINGS, PLACEMENTS, PREEMPTIONS, BACKFILLS, ADMISSIONS))


@pytest.mark.parametrize(
    ("ordering", "placement", "preemption", "backfill", "admission"), COMBINATIONS
)
def test_every_registered_policy_decides_every_pending_job(
    ordering: str, placement: str, preemption: str, backfill: str, admission: str
) -> None:
    policy = make_policy(ordering, placement, preemption, backfill, admission)
    decisions = policy.decide(SAMPLE)
    assert isinstance(decisions, Decisions)
    decided = sorted([p.job_id for p in decisions.placements] + [w.job_id for w in decisions.waits])
    assert decided == [1, 2, 3, 4, 5]
    assert policy.decide(SAMPLE) == decisions  # deterministic
    assert policy.name == f"{ordering}/{placement}/{preemption}/{backfill}/{admission}"


def test_the_default_policy() -> None:
    policy = make_policy()
    assert policy.name == "priority_fifo/best_fit/none/backfill/none"
    assert policy == make_policy("priority_fifo", "best_fit", "none", "backfill", "none")


def test_the_settings_name_pieces_by_keyword_and_pass_params() -> None:
    params = PolicyParams(min_runtime_s=60.0)
    policy = make_policy(
        ordering="priority_fifo",
        placement="best_fit",
        preemption="none",
        backfill="greedy",
        admission="none",
        params=params,
    )
    assert policy.params is params
    assert policy.name == "priority_fifo/best_fit/none/greedy/none"


@pytest.mark.parametrize(
    ("kind", "registry"),
    [
        ("ordering", ORDERINGS),
        ("placement", PLACEMENTS),
        ("preemption", PREEMPTIONS),
        ("backfill", BACKFILLS),
        ("admission", ADMISSIONS),
    ],
)
def test_an_unknown_name_lists_the_known_ones(kind: str, registry: Mapping[str, object]) -> None:
    names: dict[str, Any] = {kind: "no-such-thing"}
    with pytest.raises(ValueError) as raised:
        make_policy(**names)
    message = str(raised.value)
    assert f"unknown {kind} 'no-such-thing'" in message
    assert all(name in message for name in registry)


def test_registries_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        ORDERINGS["mine"] = ORDERINGS["priority_fifo"]  # type: ignore[index]


def test_a_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make_policy().name = "other"  # type: ignore[misc]


def test_the_package_exports() -> None:
    assert set(policy_package.__all__) == {"Policy", "make_policy", "can_ever_fit"}
    assert isinstance(policy_package.make_policy(), policy_package.Policy)
