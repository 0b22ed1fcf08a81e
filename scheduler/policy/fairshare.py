"""Fair shares of the cluster's GPUs: weighted water-filling with floors and caps.

Each queue's share is ``min(cap, max(floor, weight * L))`` for the one water level
``L`` at which the shares add up to the capacity (or every queue is capped): queues
with demand split the GPUs by weight, none gets less than its guarantee (its floor,
itself bounded by its demand), none more than its demand, its ``max_gpus`` or its
guarantee plus its ``borrow_limit_gpus``. What a queue cannot use goes to the others:
the sum of shares is ``min(capacity, sum of caps)``: work-conserving. ``L`` is found
exactly (the filled total is piecewise linear in ``L``), not by bisection.

Worked example: 16 GPUs; A (weight 1, guarantee 8, demand 2), B (weight 1, demand 20),
C (weight 2, demand 20). A's floor is min(8, 2) = 2 and its cap 2. B and C split the
other 14 by weight at level L = 14/3: B gets 4.67, C 9.33. A gets 2.

Nesting (one level): an org is one entry at the top level (its demand is its children's,
its floor the larger of its own guarantee and its children's guarantees, each bounded
by that child's demand), and its share is then water-filled among its children the same
way. A child whose ``parent`` is not a listed queue counts as a top-level queue.

If the guarantees alone exceed the capacity (nodes were lost), floors shrink in
proportion to the guarantees.

Per-GPU-type quotas (``QueueView.type_quotas``) refine the totals, never replace them:

- ``max_gpus`` of a type caps how many GPUs of that type the queue holds (admission
  holds back a job that asks for that type with QUEUE_CAP);
- ``guaranteed_gpus`` of a type protects that many of the queue's GPUs of that type:
  reclaim never takes a victim that would leave its queue below it, and a job asking
  for that type may reclaim up to it, within the queue's total guarantee;
- the total guarantee is at least the sum of the type guarantees (``guarantee``).

Example: queue ``prod`` has ``guaranteed_gpus=4`` and type quotas A100 (guarantee 6)
and H100 (cap 2). Its guarantee is max(4, 6) = 6: its floor in the water-filling is
6 GPUs; it never holds more than 2 H100s; it may reclaim A100s from borrowers up to 6.
Shares themselves are counted in GPUs of any type: the store has one capacity.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scheduler.domain.snapshot import QueueView, TypeQuota

MIN_WEIGHT = 1e-9  # a weight at or below zero counts as this: it gets leftovers only


@dataclass(frozen=True)
class Claim:
    """One entry of a water-filling: its weight, floor and cap (GPUs)."""

    name: str
    weight: float
    floor: float
    cap: float


def water_fill(claims: Sequence[Claim], capacity: float) -> dict[str, float]:
    """Shares for ``claims`` summing to ``min(capacity, sum of caps)``.

    Invariant: ``floor' <= share <= cap`` for every claim, where ``floor'`` is its floor
    (bounded by its cap), scaled down when the floors alone exceed the capacity.
    Example: claims a (w 1, floor 0, cap 10), b (w 3, floor 0, cap 10) on 8 -> a 2, b 6.
    """
    if not claims:
        return {}
    caps = {c.name: max(0.0, c.cap) for c in claims}
    if sum(caps.values()) <= capacity:
        return caps
    floors = {c.name: min(max(0.0, c.floor), caps[c.name]) for c in claims}
    total_floor = sum(floors.values())
    if total_floor >= capacity:
        scale = max(0.0, capacity) / total_floor if total_floor else 0.0
        return {name: floor * scale for name, floor in floors.items()}
    level = _water_level(claims, floors, caps, capacity)
    return {c.name: _share(c, floors, caps, level) for c in claims}


def _water_level(
    claims: Sequence[Claim],
    floors: Mapping[str, float],
    caps: Mapping[str, float],
    capacity: float,
) -> float:
    """The level ``L`` at which the shares add up to ``capacity`` (exact, O(n log n)).

    The filled total is nondecreasing and linear between the breakpoints ``floor / w``
    and ``cap / w``: find the two breakpoints around ``capacity`` and interpolate.
    Precondition: sum of floors < capacity < sum of caps.
    """
    points = sorted(
        {0.0} | {v / _weight(c) for c in claims for v in (floors[c.name], caps[c.name])}
    )
    filled = _Filled(claims, floors, caps, points)
    upper = min(bisect_left(filled, capacity), len(points) - 1)
    if upper == 0 or filled[upper] <= filled[upper - 1]:
        return points[upper]
    low, high = points[upper - 1], points[upper]
    fraction = (capacity - filled[upper - 1]) / (filled[upper] - filled[upper - 1])
    return low + fraction * (high - low)


class _Filled(Sequence[float]):
    """The filled total at each breakpoint, worked out only where a binary search looks
    (a few of them, not all): the same sums in the same order, so the same floats.
    Nondecreasing: each share is, and rounding keeps a sum of nondecreasing terms so."""

    def __init__(
        self,
        claims: Sequence[Claim],
        floors: Mapping[str, float],
        caps: Mapping[str, float],
        points: Sequence[float],
    ) -> None:
        self._args, self._points = (claims, floors, caps), points
        self._known: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._points)

    def __getitem__(self, i: int) -> float:  # type: ignore[override]
        found = self._known.get(i)
        if found is None:
            found = self._known[i] = _filled(*self._args, self._points[i])
        return found


def _weight(claim: Claim) -> float:
    return max(claim.weight, MIN_WEIGHT)


def _share(c: Claim, floors: Mapping[str, float], caps: Mapping[str, float], level: float) -> float:
    return min(caps[c.name], max(floors[c.name], _weight(c) * level))


def _filled(
    claims: Sequence[Claim], floors: Mapping[str, float], caps: Mapping[str, float], level: float
) -> float:
    return sum(_share(c, floors, caps, level) for c in claims)


def type_quota(queue: QueueView, gpu_type: str | None) -> TypeQuota | None:
    """The queue's quota for ``gpu_type`` (case-insensitive), None without one."""
    if gpu_type is None:
        return None
    wanted = gpu_type.casefold()
    return next((t for t in queue.type_quotas if t.gpu_type.casefold() == wanted), None)


def guarantee(queue: QueueView) -> int:
    """The queue's total guarantee: its own, or the sum of its type guarantees if larger."""
    return max(queue.guaranteed_gpus, sum(t.guaranteed_gpus for t in queue.type_quotas))


def queue_cap(queue: QueueView, demand: float) -> float:
    """The most a queue may hold now: its demand, its cap, its guarantee + borrow limit."""
    cap = demand
    if queue.max_gpus is not None:
        cap = min(cap, queue.max_gpus)
    if queue.borrow_limit_gpus is not None:
        cap = min(cap, guarantee(queue) + queue.borrow_limit_gpus)
    return max(0.0, cap)


def fair_shares(
    queues: Sequence[QueueView], demand: Mapping[str, float], capacity: float
) -> dict[str, float]:
    """Every queue's fair share (GPUs, fractional) given its demand (held + pending GPUs).

    Orgs (queues that are some queue's ``parent``) get a share too: the sum of their
    children's. A queue without demand gets 0.
    """
    names = {q.name for q in queues}
    children: dict[str, list[QueueView]] = {}
    for queue in queues:
        if queue.parent is not None and queue.parent in names:
            children.setdefault(queue.parent, []).append(queue)
    top = [q for q in queues if q.parent is None or q.parent not in names]
    top_claims = [_top_claim(q, children.get(q.name, []), demand) for q in top]
    shares = water_fill([c for c in top_claims if c.cap > 0], capacity)
    result = {q.name: shares.get(q.name, 0.0) for q in top}
    for org, members in children.items():
        inner = [_leaf_claim(m, demand) for m in members]
        inner_shares = water_fill([c for c in inner if c.cap > 0], result.get(org, 0.0))
        result.update({m.name: inner_shares.get(m.name, 0.0) for m in members})
    return result


def _leaf_claim(queue: QueueView, demand: Mapping[str, float]) -> Claim:
    return Claim(
        queue.name, queue.weight, guarantee(queue), queue_cap(queue, demand.get(queue.name, 0.0))
    )


def _top_claim(queue: QueueView, members: list[QueueView], demand: Mapping[str, float]) -> Claim:
    if not members:
        return _leaf_claim(queue, demand)
    inner = [_leaf_claim(m, demand) for m in members]
    member_demand = sum(c.cap for c in inner)
    floor = max(guarantee(queue), sum(min(c.floor, c.cap) for c in inner))
    return Claim(queue.name, queue.weight, floor, queue_cap(queue, member_demand))
