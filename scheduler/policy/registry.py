"""Policies by name: the settings pick each piece of a policy from these registries.

Invariant: every entry of every registry composes with every entry of the others, and
``make_policy`` is the only way settings turn names into a ``Policy``. Adding a
strategy is one line here (tests iterate the registries).

Example: ``make_policy("priority_fifo", "best_fit", "none").decide(snapshot)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

from scheduler.policy.decide import Backfill, Policy, Preempt, greedy, no_preemption
from scheduler.policy.ordering import Ordering, priority_fifo
from scheduler.policy.placement import Place, best_fit

T = TypeVar("T")

ORDERINGS: Mapping[str, Ordering] = MappingProxyType(
    {
        "priority_fifo": priority_fifo,  # priority, then submit time, then job id
    }
)
PLACEMENTS: Mapping[str, Place] = MappingProxyType(
    {
        "best_fit": best_fit,  # gang, tightest node; whole idle nodes for multi-node jobs
    }
)
PREEMPTIONS: Mapping[str, Preempt] = MappingProxyType(
    {
        "none": no_preemption,  # never stop a running attempt
    }
)
BACKFILLS: Mapping[str, Backfill] = MappingProxyType(
    {
        "greedy": greedy,  # no reservations: any job that fits now starts
    }
)


def make_policy(
    ordering: str = "priority_fifo",
    placement: str = "best_fit",
    preemption: str = "none",
    backfill: str = "greedy",
) -> Policy:
    """The policy made of these named pieces; ValueError names the known ones."""
    return Policy(
        ordering=_lookup("ordering", ORDERINGS, ordering),
        placement=_lookup("placement", PLACEMENTS, placement),
        preemption=_lookup("preemption", PREEMPTIONS, preemption),
        backfill=_lookup("backfill", BACKFILLS, backfill),
        name=f"{ordering}/{placement}/{preemption}/{backfill}",
    )


def _lookup(kind: str, registry: Mapping[str, T], name: str) -> T:
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ValueError(f"unknown {kind} {name!r}; known: {known}") from None
