"""Pure scheduling policies: ``decide(snapshot) -> Decisions``, chosen by name.

Imports only ``scheduler.domain`` and the standard library: no I/O, no clock (time is
``snapshot.now``), no logging. A policy is an ordering, an admission, a placement, a
decision pass (``greedy`` or ``backfill``) and a preemption, each picked by name from
``registry``; the pieces share a ``context.Context`` and a ``pool.FreePool``.
"""

from scheduler.policy.decide import Policy
from scheduler.policy.placement import can_ever_fit
from scheduler.policy.registry import make_policy

__all__ = ["Policy", "can_ever_fit", "make_policy"]
