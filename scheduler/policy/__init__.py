"""Pure scheduling policies: ``decide(snapshot) -> Decisions``, chosen by name.

Imports only ``scheduler.domain`` and the standard library: no I/O, no clock (time is
``snapshot.now``), no logging. A policy is an ordering, a placement, a preemption and a
backfill pass, each picked by name from ``registry``.
"""

from scheduler.policy.decide import Policy
from scheduler.policy.placement import can_ever_fit
from scheduler.policy.registry import make_policy

__all__ = ["Policy", "can_ever_fit", "make_policy"]
