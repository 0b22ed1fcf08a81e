"""Policy choices by name: parsing, labels, and the policy ``make_policy`` builds from them."""

from __future__ import annotations

import pytest

from scheduler.policy.context import PolicyParams
from scheduler.policy.registry import ORDERINGS
from scheduler.sim.run import PolicyChoice, build_policy, parse_params


def test_parse_and_label() -> None:
    base = PolicyChoice(backfill="greedy", params=(("min_runtime_s", "60"),))
    choice = PolicyChoice.parse("las+preemption=reclaim+min_runtime_s=600", base)
    assert choice == PolicyChoice(
        ordering="las",
        preemption="reclaim",
        backfill="greedy",
        params=(("min_runtime_s", "600"),),
    )
    assert choice.label == "las+preemption=reclaim+backfill=greedy+min_runtime_s=600"
    assert PolicyChoice.parse("fifo").label == "fifo"
    with pytest.raises(ValueError, match="is not PIECE=NAME"):
        PolicyChoice.parse("fifo+greedy")


def test_the_default_label_names_the_registry_default() -> None:
    assert PolicyChoice().label in ORDERINGS


def test_params_take_their_field_types() -> None:
    params = parse_params([("min_runtime_s", "600"), ("las_thresholds_gpu_s", "10,100")])
    assert params.min_runtime_s == 600.0
    assert params.las_thresholds_gpu_s == (10.0, 100.0)
    assert parse_params([]) == PolicyParams()


def test_build_policy_by_name() -> None:
    ordering = next(iter(ORDERINGS))
    policy, params, may_preempt = build_policy(PolicyChoice(ordering=ordering, preemption="none"))
    assert policy.name.startswith(ordering)
    assert params == PolicyParams()
    assert may_preempt is False
    with pytest.raises(ValueError, match="unknown ordering 'nope'"):
        build_policy(PolicyChoice(ordering="nope"))
