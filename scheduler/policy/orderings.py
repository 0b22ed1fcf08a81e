"""Orderings over a ``Context``: in which order the decision pass considers pending jobs.

Invariant: an ordering returns every pending job of the snapshot exactly once (a
permutation; jobs in backoff included: the pass gives them their wait) and is
deterministic: equal snapshots give equal orders, so the simulator can replay a cycle.
No ordering mutates the context: progressive fills charge local copies.

- ``fair_share`` (default): a progressive fill by deficit. Repeatedly the queue with the
  largest ``(fair_share - held) / weight`` gives its next job, whose GPUs are charged to
  it as if placed; ties go to the smaller decayed usage, then the queue name. With orgs
  the org's deficit picks first, then its children's. Inside a queue: higher priority,
  then least attained GPU-service (Tiresias 2D-LAS), then earlier submission, then id.
  Before all that go the jobs owed to their queue: those that keep it within
  ``min(guarantee, fair share)``, what ``reclaim`` preempts for (``_owed_first``).
- ``fair_share_sjf``: ``fair_share`` across queues; inside a queue, higher priority,
  then shortest time limit first (jobs without one last, by 2D-LAS), except that a job
  pending for ``params.sjf_aging_s`` since its submission has aged: aged jobs go before the
  young ones of their priority, by submit time, so no long job starves behind a stream
  of short ones.
- ``fifo``: submit time, then id (no priority).
- ``las``: Tiresias discretised 2D-LAS: bands by attained GPU-seconds, FIFO in a band.
- ``drf``: dominant resource fairness, progressive like ``fair_share``.
- ``multifactor``: a Slurm-like weighted sum of age, fair-share, size and priority.

Example (``fair_share``): 12 GPUs; A (weight 2) and B (weight 1) each have twelve
1-GPU jobs and hold nothing: shares 8 and 4, so normalised deficits 4 and 4. Tie: A (name).
A is charged 1 GPU: A 3.5, B 4 -> B; then A 3.5, B 3 -> A; A 3, B 3 -> A ... The order
goes A B A A B A A B ...: two of A's GPUs for each of B's, as their weights.

Cost: sorting the jobs inside their queues, then merging the Q queues: O(J log Q) for
J jobs (see "progressive fill" below): 50,000 jobs order in tens of milliseconds.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from itertools import accumulate, repeat
from operator import attrgetter, mul, sub, truediv

from scheduler.domain.snapshot import PendingJob
from scheduler.policy.context import Context, QueueState
from scheduler.policy.fairshare import MIN_WEIGHT, guarantee
from scheduler.policy.holdings import EPSILON


def fair_share(ctx: Context) -> list[PendingJob]:
    """Owed guarantees first, then queues by normalised deficit (progressive fill); jobs
    by priority then 2D-LAS."""
    return _progressive(ctx, _by_las_in_queue, _deficit_score, guarantees_first=True)


def fair_share_sjf(ctx: Context) -> list[PendingJob]:
    """Queues by normalised deficit; inside a queue shortest time limit first, with aging."""
    by_limit = shortest_first(ctx.snapshot.now, ctx.params.sjf_aging_s)
    return _progressive(ctx, by_limit, _deficit_score, guarantees_first=True)


def shortest_first(now: float, aging_s: float) -> Callable[[list[PendingJob]], None]:
    """An in-queue sort: priority, then aged jobs (pending ``aging_s`` since submission) by
    submit time, then the young ones by time limit (none: last), attained service, submit
    time. Example, aging 4 h at 10:00: A (limit 1 h, submitted 09:00), B (limit 8 h,
    05:00), C (no limit, 09:30), D (limit 2 h, 09:50) go B, A, D, C.
    """
    inf = math.inf

    def key(job: PendingJob) -> tuple[float, ...]:
        if now - job.submitted_at >= aging_s:
            return (-job.priority, 0.0, 0.0, 0.0, job.submitted_at, job.job_id)
        limit = inf if job.time_limit_s is None else job.time_limit_s
        return (-job.priority, 1.0, limit, job.attained_gpu_s, job.submitted_at, job.job_id)

    def sort(jobs: list[PendingJob]) -> None:
        jobs.sort(key=key)

    return sort


def drf(ctx: Context) -> list[PendingJob]:
    """Dominant resource fairness, progressive: the queue of least dominant share first.

    DRF compares each queue's largest share of any resource; the snapshot carries only
    GPUs, so the dominant share is ``held GPUs / capacity``, divided by the weight
    (weighted DRF): DRF reduces to "least GPUs held per weight", without the guarantees
    and demand caps of ``fair_share``. Ties: decayed usage, then name. Orgs are served
    like in ``fair_share`` (hierarchical). Inside a queue: priority, then FIFO.
    """
    return _progressive(ctx, _by_priority_fifo, _dominant_share_score)


def fifo(ctx: Context) -> list[PendingJob]:
    """Earlier ``submitted_at`` first, then lower job id; priority is ignored."""
    return sorted(ctx.snapshot.pending, key=lambda j: (j.submitted_at, j.job_id))


def las(ctx: Context) -> list[PendingJob]:
    """Tiresias discretised 2D-LAS: band by attained GPU-seconds, FIFO inside a band.

    Band ``k`` holds jobs that attained at least ``thresholds[k-1]`` and less than
    ``thresholds[k]`` GPU-seconds; band 0 goes first. Example with thresholds
    (3600, 36000): jobs that attained 0, 5000 and 3599 GPU-s fall in bands 0, 1, 0.
    Queues and user priority are ignored (the baseline as published).
    """
    thresholds = ctx.params.las_thresholds_gpu_s
    return sorted(
        ctx.snapshot.pending,
        key=lambda j: (bisect_right(thresholds, j.attained_gpu_s), j.submitted_at, j.job_id),
    )


@dataclass(frozen=True)
class MultifactorWeights:
    """Weights of the ``multifactor`` factors, each factor normalised to [0, 1].

    Like a Slurm site's ``PriorityWeight*``: priority dominates, then fair-share, then
    age, then size. Age saturates at ``max_age_s`` (Slurm's ``PriorityMaxAge``: 7 days).
    """

    priority: float = 4_000.0
    fair_share: float = 2_000.0
    age: float = 1_000.0
    job_size: float = 500.0
    max_age_s: float = 7 * 86_400.0


MULTIFACTOR_WEIGHTS = MultifactorWeights()


def multifactor(ctx: Context) -> list[PendingJob]:
    """Slurm-like multifactor priority: highest weighted sum first, then FIFO, then id.

    Factors (each in [0, 1]), weighted by ``MULTIFACTOR_WEIGHTS``:
    - priority: ``(p - lowest) / (highest - lowest)`` over the pending jobs (0 if equal);
    - fair-share: ``2 ** (-U / S)`` (Slurm classic) with ``U`` the queue's share of all
      decayed usage and ``S`` its share of all weight: 1 for an unused queue, 0.5 at
      its share, toward 0 above it;
    - age: ``(now - submitted_at) / max_age_s``, at most 1;
    - job size: the job's GPUs over the capacity, at most 1 (big jobs first, as Slurm's
      default, so they do not starve).
    Example: two jobs of equal priority and age in queues of equal weight, one with no
    usage (factor 1) and one holding all of it (U = 1, S = 0.5: factor 0.25): the
    first scores 2000 * 0.75 = 1500 more.
    """
    weights = MULTIFACTOR_WEIGHTS
    score = _multifactor_score(ctx, weights)
    return sorted(ctx.snapshot.pending, key=lambda j: (-score(j), j.submitted_at, j.job_id))


def _multifactor_score(ctx: Context, w: MultifactorWeights) -> Callable[[PendingJob], float]:
    pending = ctx.snapshot.pending
    lowest = min((j.priority for j in pending), default=0)
    spread = max((j.priority for j in pending), default=0) - lowest
    fs = _fair_share_factors(ctx)
    now, capacity = ctx.snapshot.now, max(ctx.capacity, 1)

    def score(job: PendingJob) -> float:
        priority = (job.priority - lowest) / spread if spread else 0.0
        age = min(1.0, max(0.0, now - job.submitted_at) / w.max_age_s)
        size = min(1.0, job.request.total_gpus / capacity)
        return (
            w.priority * priority + w.fair_share * fs[job.queue] + w.age * age + w.job_size * size
        )

    return score


def _fair_share_factors(ctx: Context) -> dict[str, float]:
    """``2 ** (-U / S)`` per leaf queue with pending jobs (see ``multifactor``)."""
    leaves = {j.queue for j in ctx.snapshot.pending}
    states = [ctx.queue(name) for name in sorted(leaves)]
    total_usage = sum(max(0.0, s.view.usage_gpu_s) for s in states)
    total_weight = sum(max(s.view.weight, MIN_WEIGHT) for s in states)
    factors = {}
    for state in states:
        usage = max(0.0, state.view.usage_gpu_s) / total_usage if total_usage else 0.0
        share = max(state.view.weight, MIN_WEIGHT) / total_weight
        factors[state.view.name] = math.pow(2.0, -usage / share)
    return factors


# --- progressive fill (fair_share, drf) -------------------------------------------
#
# A lane is a queue (or an org) with its jobs in service order. Its key when its next
# job is at its head is ``(held - base) / scale`` with ``held`` what it holds so far:
# nondecreasing along the lane. Picking the smallest head key, charging, repeating (a
# heap merge) is therefore the same as one stable sort of all jobs by that key, lanes
# laid out by (usage, name): ties resolve exactly as the heap would. Timsort merges the
# Q pre-sorted runs in O(J log Q), in C, which is faster than a heap loop in Python.


@dataclass(frozen=True)
class _Lane:
    """A queue or org during a progressive fill: key of its k-th job is
    ``(held + GPUs of its first k jobs - base) / scale``."""

    name: str
    usage: float
    held: float
    base: float
    scale: float
    jobs: list[PendingJob]
    gpus: list[int]  # GPUs of each job, in step with ``jobs``


LaneScore = Callable[[QueueState, Context], tuple[float, float]]  # (base, scale)
_gpus, _nodes = attrgetter("request.gpus"), attrgetter("request.nodes")


def _deficit_score(state: QueueState, ctx: Context) -> tuple[float, float]:
    return state.fair_share, max(state.view.weight, MIN_WEIGHT)  # -(share - held) / w


def _dominant_share_score(state: QueueState, ctx: Context) -> tuple[float, float]:
    return 0.0, max(ctx.capacity, 1) * max(state.view.weight, MIN_WEIGHT)  # held / (C w)


def _by_las_in_queue(jobs: list[PendingJob]) -> None:
    """Sort in place: higher priority, less attained service, earlier, lower id."""
    jobs.sort(key=attrgetter("job_id"))
    jobs.sort(key=attrgetter("submitted_at"))
    jobs.sort(key=attrgetter("attained_gpu_s"))
    jobs.sort(key=attrgetter("priority"), reverse=True)  # stable, like the others


def _by_priority_fifo(jobs: list[PendingJob]) -> None:
    """Sort in place: higher priority, earlier, lower id."""
    jobs.sort(key=attrgetter("job_id"))
    jobs.sort(key=attrgetter("submitted_at"))
    jobs.sort(key=attrgetter("priority"), reverse=True)


def _progressive(
    ctx: Context,
    sort_jobs: Callable[[list[PendingJob]], None],
    score: LaneScore,
    *,
    guarantees_first: bool = False,
) -> list[PendingJob]:
    """The jobs in progressive-fill order (see the module docstring and above)."""
    jobs = list(ctx.snapshot.pending)
    sort_jobs(jobs)  # once for all queues; grouping keeps the order
    by_queue: dict[str, list[PendingJob]] = {}
    for job in jobs:  # no new list per job (``setdefault`` would make one each time)
        found = by_queue.get(job.queue)
        if found is None:
            by_queue[job.queue] = [job]
        else:
            found.append(job)
    top: list[_Lane] = []
    members: dict[str, list[_Lane]] = {}
    for name, queue_jobs in by_queue.items():
        state = ctx.queue(name)
        gpus = list(map(mul, map(_gpus, queue_jobs), map(_nodes, queue_jobs)))  # in C
        lane = _lane(state, (queue_jobs, gpus), ctx, score)
        parent = state.view.parent
        if parent is not None and parent in ctx.queues and parent not in by_queue:
            members.setdefault(parent, []).append(lane)
        else:  # a standalone queue (or an org with jobs of its own: served as a leaf)
            top.append(lane)
    for org, children in members.items():
        state = ctx.queues[org]
        usage = max(state.view.usage_gpu_s, sum(c.usage for c in children))
        top.append(_lane(state, _merge(children), ctx, score, usage))
    if guarantees_first:
        return _owed_first(top, ctx)
    return _merge(top, with_gpus=False)[0]


def _lane(
    state: QueueState,
    run: tuple[list[PendingJob], list[int]],
    ctx: Context,
    score: LaneScore,
    usage: float | None = None,
) -> _Lane:
    base, scale = score(state, ctx)
    usage = state.view.usage_gpu_s if usage is None else usage
    return _Lane(state.view.name, usage, float(state.held), base, scale, *run)


def _owed_first(lanes: list[_Lane], ctx: Context) -> list[PendingJob]:
    """The progressive fill with each lane's owed jobs first: the jobs that, charged in
    lane order (a job that would overshoot is passed over, not charged), keep the lane
    within ``min(guarantee, fair share)``: what ``reclaim`` stops borrowers for. They go
    first, lanes by normalised guarantee deficit; then every other job by ``_merge``,
    the owed jobs charged to their lanes. Without this a queue between its guarantee and
    its fair share could lose a GPU to reclaim and, being further below its fair share
    than the owed queue, take it back in the next cycle: a preemption every
    ``min_runtime_s``, none of it for the owed queue.

    Example: 10 GPUs all held; A (guarantee 4, share 4) holds 2 and waits with jobs of 4
    and 1 GPU; B (share 6, weight 3) holds 8 and waits with a 1-GPU job. A's 1-GPU job is
    owed (2 + 1 <= 4; the 4-GPU job would overshoot): it goes first, then the others.
    """
    owed_lanes: list[_Lane] = []
    rest: list[_Lane] = []
    for lane in lanes:
        floor = _owed_floor(ctx, lane.name)
        room = floor - lane.held
        if room < 1.0 - EPSILON:  # not even one GPU is owed: the usual lane
            rest.append(lane)
            continue
        owed: list[PendingJob] = []
        owed_gpus: list[int] = []
        others: list[PendingJob] = []
        other_gpus: list[int] = []
        for at, (job, gpus) in enumerate(zip(lane.jobs, lane.gpus, strict=True)):
            if room < 1.0 - EPSILON:  # no room for any job: the rest as they are
                others.extend(lane.jobs[at:])
                other_gpus.extend(lane.gpus[at:])
                break
            if 0 < gpus <= room + EPSILON:
                owed.append(job)
                owed_gpus.append(gpus)
                room -= gpus
            else:
                others.append(job)
                other_gpus.append(gpus)
        owed_lanes.append(replace(lane, base=floor, jobs=owed, gpus=owed_gpus))
        held = lane.held + sum(owed_gpus)
        rest.append(replace(lane, held=held, jobs=others, gpus=other_gpus))
    first = _merge(owed_lanes, with_gpus=False)[0] if owed_lanes else []
    return first + _merge(rest, with_gpus=False)[0]


def _owed_floor(ctx: Context, name: str) -> float:
    """``min(guarantee, fair share)`` of a queue or org: GPUs reclaim returns to it."""
    state = ctx.queues.get(name)
    if state is None:
        return 0.0
    return min(float(guarantee(state.view)), state.fair_share)


def _merge(lanes: Sequence[_Lane], *, with_gpus: bool = True) -> tuple[list[PendingJob], list[int]]:
    """All jobs of ``lanes`` (and their GPUs, unless not ``with_gpus``) by head key, lane
    (usage, name), position. Per job, only C loops (``map``): the same float operations
    as ``(held - base) / scale``, so the same keys."""
    jobs: list[PendingJob] = []
    gpus: list[int] = []
    keys: list[float] = []
    for lane in sorted(lanes, key=lambda lane: (lane.usage, lane.name)):
        if not lane.jobs:
            continue
        base, scale = lane.base, lane.scale
        held = accumulate(lane.gpus[:-1], initial=lane.held)  # before each job
        keys.extend(map(truediv, map(sub, held, repeat(base)), repeat(scale)))
        jobs.extend(lane.jobs)
        gpus.extend(lane.gpus)
    order = sorted(range(len(jobs)), key=keys.__getitem__)  # stable
    if not with_gpus:
        return list(map(jobs.__getitem__, order)), []
    return list(map(jobs.__getitem__, order)), list(map(gpus.__getitem__, order))
