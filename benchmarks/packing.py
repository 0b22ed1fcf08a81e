"""Packing quality of a drain, from the jobs' own history: how long GPUs sat free while
a waiting job would have fit on them.

Each attempt holds its GPUs from its creation (the placement) to its end (the release);
a job waits from its submit to its first placement. Between two such moments nothing
changes, so the idle GPU-seconds are summed interval by interval: on each node, the
free GPUs count as *idle while needed* when some waiting job asks for no more GPUs
than the node has free.

    free on n1: 3, waiting: a 2-GPU job  -> 3 GPUs idle while needed for that interval
    free on n1: 1, waiting: 2-GPU jobs  -> 0 (no waiting job fits there)

That sum holds the scheduler's reaction time (a release is known when its agent
reports it, a placement is made by the next cycle). Holes in the packing itself show
in the second figure: after each round of placements (the attempts created at one
moment: one cycle's apply), was there still a job waiting that fit in GPUs that had
been free since the round before? Counting only what was free since the previous
round leaves out releases the cycle could not have seen yet: a cycle reads its
snapshot after the previous cycle's apply committed, so everything released before
that apply was in it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from scheduler.domain.views import JobView


@dataclass(frozen=True)
class Packing:
    idle_while_needed_gpu_s: float  # GPU-seconds free while a waiting job fit there
    busy_gpu_s: float  # GPU-seconds held by attempts
    span_s: float  # first submit to last release
    rounds: int  # rounds of placements after the first (cycles that placed)
    rounds_leaving_a_fit: int  # of those, how many left a job waiting that fit

    @property
    def idle_fraction(self) -> float:
        """Idle-while-needed GPU-seconds over all GPU-seconds of the span."""
        total = self.idle_while_needed_gpu_s + self.busy_gpu_s
        return self.idle_while_needed_gpu_s / total if total else 0.0


def packing(jobs: list[JobView], gpus_per_node: dict[str, int]) -> Packing:
    """The packing of a drain of ``jobs`` (shown with their attempts) on these nodes."""
    moments: list[tuple[float, int, str, object]] = []
    busy = 0.0
    for job in jobs:
        gpus = job.spec.get("resources", {}).get("gpus", 1)
        attempts = job.attempts or []
        first = min((a.created_at.timestamp() for a in attempts), default=None)
        moments.append((job.submitted_at.timestamp(), 1, "wait", gpus))
        if first is not None:
            moments.append((first, 0, "unwait", gpus))
        for attempt in attempts:
            start = attempt.created_at.timestamp()
            end = (attempt.ended_at or attempt.created_at).timestamp()
            per_node = Counter(ref.node for ref in attempt.gpus)
            moments.append((start, 0, "hold", per_node))
            moments.append((end, 1, "release", per_node))
            busy += (end - start) * sum(per_node.values())
    moments.sort(key=lambda m: (m[0], m[1]))
    idle, span = _sweep(moments, gpus_per_node)
    rounds = sorted({a.created_at.timestamp() for job in jobs for a in job.attempts or []})
    misses = sum(
        _left_a_fit(jobs, gpus_per_node, rounds[k - 1], rounds[k]) for k in range(1, len(rounds))
    )
    return Packing(
        idle_while_needed_gpu_s=idle,
        busy_gpu_s=busy,
        span_s=span,
        rounds=max(len(rounds) - 1, 0),
        rounds_leaving_a_fit=misses,
    )


def _left_a_fit(
    jobs: list[JobView], gpus_per_node: dict[str, int], previous: float, now: float
) -> bool:
    """After the round at ``now``: a job waiting since ``previous`` that fits in GPUs free
    since ``previous`` (held by nothing placed by ``now`` and not ended after ``previous``)?"""
    free = dict(gpus_per_node)
    smallest: int | None = None
    for job in jobs:
        attempts = job.attempts or []
        placed = min((a.created_at.timestamp() for a in attempts), default=None)
        if job.submitted_at.timestamp() <= previous and (placed is None or placed > now):
            gpus = int(job.spec.get("resources", {}).get("gpus", 1))
            smallest = gpus if smallest is None else min(smallest, gpus)
        for attempt in attempts:
            end = attempt.ended_at.timestamp() if attempt.ended_at else None
            if attempt.created_at.timestamp() <= now and (end is None or end > previous):
                for ref in attempt.gpus:
                    free[ref.node] -= 1
    return smallest is not None and any(count >= smallest for count in free.values())


def _sweep(
    moments: list[tuple[float, int, str, object]], gpus_per_node: dict[str, int]
) -> tuple[float, float]:
    """(GPU-seconds idle while a waiting job fit, the span of the moments)."""
    free = dict(gpus_per_node)
    waiting: Counter[int] = Counter()
    idle = 0.0
    previous = moments[0][0] if moments else 0.0
    for at, _, kind, what in moments:
        idle += (at - previous) * _idle_now(free, waiting)
        previous = at
        if kind == "wait":
            waiting[what] += 1  # type: ignore[index]
        elif kind == "unwait":
            waiting[what] -= 1  # type: ignore[index]
        else:
            sign = -1 if kind == "hold" else 1
            for node, count in what.items():  # type: ignore[attr-defined]
                free[node] += sign * count
    span = moments[-1][0] - moments[0][0] if moments else 0.0
    return idle, span


def _idle_now(free: dict[str, int], waiting: Counter[int]) -> int:
    smallest = min((size for size, n in waiting.items() if n > 0), default=None)
    if smallest is None:
        return 0
    return sum(count for count in free.values() if count >= smallest)
