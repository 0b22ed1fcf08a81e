"""Policies by name: the settings pick each piece of a policy from these registries.

Invariant: every entry of every registry composes with every entry of the others, and
``make_policy`` is the only way settings turn names into a ``Policy``. Adding a piece is
one line in its registry (tests iterate the registries).

Example: ``make_policy(ordering="priority_fifo", backfill="backfill").decide(snapshot)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

from scheduler.policy.admission import quota
from scheduler.policy.backfill import backfill
from scheduler.policy.context import Admission, Ordering, Pass, Place, PolicyParams, Preempt
from scheduler.policy.decide import Policy, admit_all, greedy, no_preemption
from scheduler.policy.ordering import priority_fifo
from scheduler.policy.orderings import drf, fair_share, fair_share_sjf, fifo, las, multifactor
from scheduler.policy.placement import best_fit
from scheduler.policy.preemption import reclaim, reclaim_las

T = TypeVar("T")

ORDERINGS: Mapping[str, Ordering] = MappingProxyType(
    {
        "priority_fifo": priority_fifo,  # priority, then submit time, then job id
        "fair_share": fair_share,  # queues by deficit to their fair share; priority, 2D-LAS
        "fair_share_sjf": fair_share_sjf,  # fair_share; in a queue shortest limit, with aging
        "fifo": fifo,  # submit time, then job id (no priority)
        "las": las,  # Tiresias discretised 2D-LAS: bands of attained GPU-seconds, FIFO
        "drf": drf,  # least GPUs held per weight (DRF with GPUs the only resource)
        "multifactor": multifactor,  # Slurm-like: priority, fair-share, age, size
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
        "reclaim": reclaim,  # return guarantees and due reservations from borrowed GPUs
        "reclaim_las": reclaim_las,  # reclaim, and less-served jobs stop more-served ones
    }
)
BACKFILLS: Mapping[str, Pass] = MappingProxyType(
    {
        "backfill": backfill,  # EASY: one reservation per queue; small jobs use what it spares
        "greedy": greedy,  # no reservations: any job that fits now starts
    }
)
ADMISSIONS: Mapping[str, Admission] = MappingProxyType(
    {
        "none": admit_all,  # no quota: a job that fits starts
        "quota": quota,  # caps, borrow limits; non-preemptible jobs within guarantees
    }
)


def make_policy(
    ordering: str = "priority_fifo",
    placement: str = "best_fit",
    preemption: str = "none",
    backfill: str = "backfill",
    admission: str = "none",
    params: PolicyParams | None = None,
) -> Policy:
    """The policy made of these named pieces; ValueError names the known ones."""
    return Policy(
        ordering=_lookup("ordering", ORDERINGS, ordering),
        placement=_lookup("placement", PLACEMENTS, placement),
        preemption=_lookup("preemption", PREEMPTIONS, preemption),
        backfill=_lookup("backfill", BACKFILLS, backfill),
        admission=_lookup("admission", ADMISSIONS, admission),
        params=params or PolicyParams(),
        name=f"{ordering}/{placement}/{preemption}/{backfill}/{admission}",
    )


def _lookup(kind: str, registry: Mapping[str, T], name: str) -> T:
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise ValueError(f"unknown {kind} {name!r}; known: {known}") from None
