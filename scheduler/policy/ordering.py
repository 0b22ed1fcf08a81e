"""Orderings: in which order the decision pass considers pending jobs.

Invariant: an ordering returns every pending job of the snapshot exactly once (a
permutation; ``Policy.decide`` checks it), and is deterministic: equal inputs give
equal orders, so a cycle can be replayed by the simulator.

Example (``priority_fifo``): jobs (id, priority, submitted_at) 1 (0, 10.0),
2 (5, 30.0), 3 (0, 10.0), 4 (0, 5.0) go 2, 4, 1, 3: higher priority first, then the
earlier submission (a requeued job keeps its original time), then the lower id.
"""

from __future__ import annotations

from collections.abc import Callable

from scheduler.domain.snapshot import PendingJob, Snapshot

Ordering = Callable[[Snapshot], list[PendingJob]]
"""An ordering strategy: the snapshot's pending jobs, first to be considered first."""


def priority_fifo(snapshot: Snapshot) -> list[PendingJob]:
    """Higher priority first, then earlier ``submitted_at``, then lower job id."""
    return sorted(snapshot.pending, key=lambda j: (-j.priority, j.submitted_at, j.job_id))
