"""Admission: quota rules that may hold a job back even when GPUs are free.

``Admission(ctx, job) -> Wait | None``: the pass asks before placing a job and calls
``ctx.charge(job)`` after placing it, so every check sees this pass's placements.

``quota`` (the default) checks, in this order, and the first rule broken is the wait:

1. ``max_gpus`` of the queue, then of its org: QUEUE_CAP;
2. ``max_gpus`` of a type quota for the type the job asks for (queue, then org): QUEUE_CAP
   (a job that asks for no type is not held back by type caps: its GPUs' type is only
   known once placed; it counts towards them from the next cycle on);
3. the borrow limit, ``guarantee + borrow_limit_gpus``, of the queue, then of its org:
   WAITING_FOR_QUOTA;
4. a non-preemptible job runs only inside a guarantee, its queue's or its org's (shared
   by the org's queues), since nobody could reclaim those GPUs: WAITING_FOR_QUOTA.

Invariant: admission is work-conserving: being above its fair share alone never holds a
job back (idle GPUs are lent; reclaim takes them back when their owner needs them).
A job asking for no GPU is always admitted.

Example: queue ``research`` (guarantee 8, borrow limit 4) holds 10 GPUs. A 2-GPU job is
admitted (12 <= 8 + 4); a 4-GPU job waits: "queue research may hold 12 GPUs (its
guarantee of 8 plus a borrow limit of 4) and holds 10; the job needs 4". A
non-preemptible 1-GPU job waits as well: 11 GPUs would be above its guarantee of 8.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from scheduler.domain.decisions import Wait, WaitReason
from scheduler.domain.snapshot import PendingJob
from scheduler.policy.context import Context, QueueState, judges_by_kind
from scheduler.policy.explain import make_wait
from scheduler.policy.fairshare import guarantee, type_quota

# What ``quota`` found for one kind of job (a reason and the message around the job
# id, or None: admitted), by (queue, GPUs, type, preemptible), with the queue's and its
# org's states and holdings then: valid while they hold as much (a queue's headroom
# changes only when it, or its org, is charged).
_Verdict = tuple[WaitReason, str, str] | None
_Entry = tuple[QueueState, "QueueState | None", int, int, _Verdict]
_Memo = dict[tuple[str, int, str | None, bool], _Entry]


@judges_by_kind  # (queue, GPUs, type, preemptible) and the holdings: see ``_Memo``
def quota(ctx: Context, job: PendingJob) -> Wait | None:
    """The first quota rule ``job`` would break if placed now (see module), else None.

    Memoised per queue and kind of job (GPUs, type, preemptible) in ``ctx.extra``,
    while the queue's and its org's holdings stay what they were: 50,000 jobs of a
    dozen kinds in twenty queues are judged a few hundred times. A memo hit is one
    lookup and two comparisons.
    """
    request = job.request
    gpus = request.gpus * request.nodes
    if gpus <= 0:
        return None
    memo = cast("_Memo | None", ctx.extra.get("quota_memo"))
    if memo is None:
        memo = ctx.extra["quota_memo"] = {}
    key = (job.queue, gpus, request.gpu_type, job.preemptible)
    entry = memo.get(key)
    if (
        entry is None
        or entry[0].held != entry[2]
        or (entry[1] is not None and entry[1].held != entry[3])
    ):
        entry = _judge(ctx, job, gpus)
        if entry[1] is not None or entry[0].view.parent is None:
            # (an org the snapshot does not list may appear with a charge: judged anew)
            memo[key] = entry
    verdict = entry[4]
    if verdict is None:
        return None
    reason, before, after = verdict
    message = f"{before}{job.job_id}{after}" if after else before
    return make_wait(job.job_id, reason, message, None, None)


def _judge(ctx: Context, job: PendingJob, gpus: int) -> _Entry:
    """A memo entry for ``job``'s kind: the states it depends on, their holdings, the verdict."""
    leaf = ctx.queues.get(job.queue) or ctx.queue(job.queue)
    parent = leaf.view.parent
    org = None if parent is None else ctx.queues.get(parent)
    return leaf, org, leaf.held, 0 if org is None else org.held, _verdict(ctx, job, gpus)


def _verdict(ctx: Context, job: PendingJob, gpus: int) -> _Verdict:
    """The first rule broken (a reason, and the message before and after the job id)."""
    states = list(_queue_and_org(ctx, job.queue))
    for message in _cap_breaches(states, job, gpus):
        return WaitReason.QUEUE_CAP, message, ""
    for message in _borrow_breaches(states, gpus):
        return WaitReason.WAITING_FOR_QUOTA, message, ""
    if not job.preemptible and not any(s.held + gpus <= guarantee(s.view) for _, s in states):
        before, after = _outside_guarantee(states, job)
        return WaitReason.WAITING_FOR_QUOTA, before, after
    return None


def _queue_and_org(ctx: Context, queue: str) -> Iterator[tuple[str, QueueState]]:
    """("queue", the job's queue), then ("org", its org) if the snapshot lists it."""
    leaf = ctx.queue(queue)
    yield "queue", leaf
    parent = leaf.view.parent
    if parent is not None and parent in ctx.queues:
        yield "org", ctx.queues[parent]


def _cap_breaches(
    states: list[tuple[str, QueueState]], job: PendingJob, gpus: int
) -> Iterator[str]:
    for kind, state in states:
        cap = state.view.max_gpus
        if cap is not None and state.held + gpus > cap:
            yield (
                f"{kind} {state.view.name} holds {state.held} of its cap of "
                f"{_gpus(cap)}; the job needs {gpus}"
            )
    for kind, state in states:
        quota_ = type_quota(state.view, job.request.gpu_type)
        if quota_ is None or quota_.max_gpus is None:
            continue
        held = state.held_by_type.get(quota_.gpu_type.casefold(), 0)
        if held + gpus > quota_.max_gpus:
            yield (
                f"{kind} {state.view.name} holds {held} of its cap of "
                f"{_gpus(quota_.max_gpus, quota_.gpu_type)}; the job needs {gpus}"
            )


def _borrow_breaches(states: list[tuple[str, QueueState]], gpus: int) -> Iterator[str]:
    for kind, state in states:
        borrow = state.view.borrow_limit_gpus
        if borrow is None:
            continue
        floor = guarantee(state.view)
        if state.held + gpus > floor + borrow:
            yield (
                f"{kind} {state.view.name} may hold {_gpus(floor + borrow)} (its "
                f"guarantee of {floor} plus a borrow limit of {borrow}) and holds "
                f"{state.held}; the job needs {gpus}"
            )


def _outside_guarantee(states: list[tuple[str, QueueState]], job: PendingJob) -> tuple[str, str]:
    """The message, before and after the job id (it is the same for every such job)."""
    leaf = states[0][1]
    where = f"queue {leaf.view.name}'s guarantee of {_gpus(guarantee(leaf.view))}"
    if len(states) > 1:
        org = states[1][1]
        where += f" or org {org.view.name}'s of {guarantee(org.view)}"
    return "job ", (
        f" is not preemptible, so it runs only inside {where}; "
        f"the queue holds {leaf.held} and the job needs {job.request.total_gpus}"
    )


def _gpus(count: int, gpu_type: str | None = None) -> str:
    kind = "GPU" if gpu_type is None else f"{gpu_type} GPU"
    return f"{count} {kind}" if count == 1 else f"{count} {kind}s"
