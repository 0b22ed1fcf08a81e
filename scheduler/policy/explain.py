"""Why a job waits: a reason code and one sentence for every job a pass does not start.

Invariant: a pass gives each waiting job exactly one ``Wait``, in pass order, whose
``position`` is 1 for the first waiting job of its queue, 2 for the next, and so on.
Explanations that depend only on the request and on what the pass leaves free are
computed once per key (the request shape), not once per job: 50,000 waiting jobs of
a dozen shapes cost a dozen explanations.

Example: a node with 8 GPUs, 2 free; jobs A (4 GPUs) and B (4 GPUs) of queue ``q`` and
C (1 GPU, in backoff) of queue ``r`` wait: A "needs 4 GPUs on 1 node; the most free on
one node is 2" (position 1), B the same sentence (position 2), C "waits out its retry
backoff; eligible again in 30 s" (position 1 of ``r``).
"""

from __future__ import annotations

import gc
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from scheduler.domain.decisions import Wait, WaitReason
from scheduler.domain.snapshot import NodeView, PendingJob, ResourceRequest
from scheduler.policy.pool import FreePool

Shape = tuple[int, int, str | None, int | None]


def shape_of(request: ResourceRequest) -> Shape:
    """A request as a plain tuple: hashes and compares faster than the dataclass."""
    return (request.gpus, request.nodes, request.gpu_type, request.gpu_memory_mib)


_FIELDS = ("job_id", "reason", "message", "position", "estimated_start")


def _setters() -> tuple[Callable[[Wait, object], None], ...] | None:
    """The field descriptors' setters of ``Wait`` in ``_FIELDS`` order (see
    ``_wait_maker``), None if it has no slots."""
    if not all(type(getattr(Wait, f, None)).__name__ == "member_descriptor" for f in _FIELDS):
        return None
    return tuple(getattr(Wait, f).__set__ for f in _FIELDS)


_SETTERS = _setters()


def _wait_maker() -> Callable[[int, WaitReason, str, int | None, float | None], Wait]:
    """``Wait(job_id, reason, message, position, estimated_start)``, about twice as fast:
    a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
    by name; with slots, the field descriptors set them directly (same object, same
    equality). Falls back to the constructor if ``Wait`` ever loses its slots."""
    if _SETTERS is None:
        return Wait
    new = object.__new__
    set_id, set_reason, set_message, set_position, set_start = _SETTERS

    def make(
        job_id: int,
        reason: WaitReason,
        message: str,
        position: int | None,
        estimated_start: float | None,
    ) -> Wait:
        wait = new(Wait)
        set_id(wait, job_id)
        set_reason(wait, reason)
        set_message(wait, message)
        set_position(wait, position)
        set_start(wait, estimated_start)
        return wait

    return make


make_wait = _wait_maker()


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a hot loop of a pass, back on after (if it
    was on). Tens of thousands of new acyclic objects (waits, list rows) would otherwise
    set off collections that walk every live object, for no cycle to find."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class WaitList:
    """The waits of one pass in pass order; ``finish`` numbers them and explains the rest.

    Garbage: at 50,000 waits, every object that lives until ``finish`` counts; a tuple per
    row, or a tuple key per job, doubles them and makes Python run a full collection
    (~50 ms) inside the pass. So: three parallel lists, and keys are small ints.
    """

    __slots__ = ("_jobs", "_keys", "_waits")

    def __init__(self) -> None:
        self._jobs: list[PendingJob] = []
        self._waits: list[Wait | None] = []
        self._keys: list[int] = []

    def add(self, job: PendingJob, wait: Wait | None, key: int = -1) -> None:
        """Record a wait; None: explain it after the pass, once per ``key``."""
        self._jobs.append(job)
        self._waits.append(wait)
        self._keys.append(key)

    def appenders(
        self,
    ) -> tuple[Callable[[PendingJob], None], Callable[[Wait | None], None], Callable[[int], None]]:
        """The three appends that ``add`` makes (job, wait, key), for a hot loop that
        records a wait inline, without the method call; always all three, in step."""
        return self._jobs.append, self._waits.append, self._keys.append

    def finish(self, explain: Callable[[PendingJob], Wait]) -> tuple[Wait, ...]:
        """The waits with their positions; a deferred one takes the reason, message and
        estimated start that ``explain`` gives the first job of its key.

        The garbage collector is paused meanwhile (``gc_paused``).
        """
        with gc_paused():
            return self._finish(explain)

    def _finish(self, explain: Callable[[PendingJob], Wait]) -> tuple[Wait, ...]:
        if _SETTERS is None:
            return self._finish_with(explain, make_wait)
        lines: dict[str, int] = {}
        explained: dict[int, tuple[WaitReason, str, float | None]] = {}
        waits: list[Wait] = []
        append, make, new = waits.append, make_wait, object.__new__
        set_id, set_reason, set_message, set_position, set_start = _SETTERS
        for job, wait, key in zip(self._jobs, self._waits, self._keys, strict=True):
            queue = job.queue
            position = lines[queue] = lines.get(queue, 0) + 1
            if wait is not None:
                append(make(job.job_id, wait.reason, wait.message, position, wait.estimated_start))
                continue
            found = explained.get(key)
            if found is None:
                first = explain(job)
                found = explained[key] = (first.reason, first.message, first.estimated_start)
            made = new(Wait)  # ``make_wait``, inline: the most common wait, 50,000 a cycle
            set_id(made, job.job_id)
            set_reason(made, found[0])
            set_message(made, found[1])
            set_position(made, position)
            set_start(made, found[2])
            append(made)
        return tuple(waits)

    def _finish_with(
        self, explain: Callable[[PendingJob], Wait], make: Callable[..., Wait]
    ) -> tuple[Wait, ...]:
        """``_finish`` through ``make`` for every wait (a ``Wait`` without slots)."""
        lines: dict[str, int] = {}
        explained: dict[int, tuple[WaitReason, str, float | None]] = {}
        waits: list[Wait] = []
        for job, wait, key in zip(self._jobs, self._waits, self._keys, strict=True):
            queue = job.queue
            position = lines[queue] = lines.get(queue, 0) + 1
            if wait is not None:
                waits.append(
                    make(job.job_id, wait.reason, wait.message, position, wait.estimated_start)
                )
                continue
            found = explained.get(key)
            if found is None:
                first = explain(job)
                found = explained[key] = (first.reason, first.message, first.estimated_start)
            waits.append(make(job.job_id, found[0], found[1], position, found[2]))
        return tuple(waits)


def backoff_wait(job: PendingJob, now: float) -> Wait | None:
    """A BACKOFF wait while ``now`` is before the job's ``not_before``, else None."""
    if job.not_before is None or job.not_before <= now:
        return None
    seconds = math.ceil(job.not_before - now)
    message = f"waits out its retry backoff; eligible again in {seconds} s"
    return make_wait(job.job_id, WaitReason.BACKOFF, message, None, None)


def explain_wait(job: PendingJob, pool: FreePool) -> Wait:
    """The most precise reason why ``job`` does not fit in ``pool`` now, in one sentence.

    NO_NODES: no node is up (for a job without GPUs: fewer than it asks for).
    GPU_TYPE_UNAVAILABLE: the up nodes could not hold it even if they were empty (type,
    memory, GPU count or health). Else INSUFFICIENT_GPUS.
    """
    request = job.request
    needs = f"needs {describe_request(request)}"
    up = pool.up_count()
    if not up:
        return Wait(job.job_id, WaitReason.NO_NODES, f"{needs}; {_no_node_up(pool.nodes)}")
    if request.gpus == 0:  # any up node holds it: it only waits when too few are up
        detail = f"only {count(up, 'node')} {'is' if up == 1 else 'are'} up"
        return Wait(job.job_id, WaitReason.NO_NODES, f"{needs}; {detail}")
    if request.nodes > 1:
        reason, detail = _why_not_multi_node(request, pool)
    else:
        reason, detail = _why_not_one_node(request, pool)
    return Wait(job.job_id, reason, f"{needs}; {detail}")


def _why_not_one_node(request: ResourceRequest, pool: FreePool) -> tuple[WaitReason, str]:
    capacity = pool.capacity(request)
    if capacity < request.gpus:
        detail = (
            f"no up node has {request.gpus} {_kind(request)} (the most on one node is {capacity})"
        )
        return WaitReason.GPU_TYPE_UNAVAILABLE, detail
    return WaitReason.INSUFFICIENT_GPUS, f"the most free on one node is {pool.most_free(request)}"


def _why_not_multi_node(request: ResourceRequest, pool: FreePool) -> tuple[WaitReason, str]:
    holders = pool.holders(request)
    if holders < request.nodes:
        has = "has" if holders == 1 else "have"
        detail = f"only {count(holders, 'up node')} {has} {request.gpus} {_kind(request)}"
        return WaitReason.GPU_TYPE_UNAVAILABLE, detail
    idle = pool.idle_holders(request)
    verb = "is" if idle == 1 else "are"
    detail = (
        f"it takes whole idle nodes and {idle} of the {holders} up nodes "
        f"that could hold it {verb} idle"
    )
    return WaitReason.INSUFFICIENT_GPUS, detail


def describe_request(request: ResourceRequest) -> str:
    """``ResourceRequest(4, 2, "A100-80GB", 40960)`` ->
    "4 GPUs of type A100-80GB with at least 40 GiB each on each of 2 nodes"."""
    what = count(request.gpus, "GPU") if request.gpus else "no GPU"
    if request.gpus and request.gpu_type is not None:
        what += f" of type {request.gpu_type}"
    if request.gpus and request.gpu_memory_mib is not None:
        what += f" with at least {_size(request.gpu_memory_mib)} each"
    where = "1 node" if request.nodes == 1 else f"each of {request.nodes} nodes"
    return f"{what} on {where}"


def starting(at: float, now: float) -> str:
    """When a reservation starts, in words: "starting in 12 min", "starting now", or
    "until running jobs end" when it waits on attempts without a time limit (``inf``)."""
    if math.isinf(at):
        return "until running jobs end"
    seconds = math.ceil(at - now)
    if seconds <= 0:
        return "starting now"
    if seconds < 60:
        return f"starting in {seconds} s"
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    if not hours:
        return f"starting in {minutes} min"
    return f"starting in {hours} h" + (f" {minutes} min" if minutes else "")


def _kind(request: ResourceRequest) -> str:
    constrained = request.gpu_type is not None or request.gpu_memory_mib is not None
    return "matching healthy GPUs" if constrained else "healthy GPUs"


def _no_node_up(nodes: Sequence[NodeView]) -> str:
    if not nodes:
        return "no node has registered"
    states = Counter(n.state.value for n in nodes)
    return "no node is up (" + ", ".join(f"{c} {s}" for s, c in sorted(states.items())) + ")"


def count(n: int, noun: str) -> str:
    """``count(1, "GPU")`` -> "1 GPU", ``count(3, "GPU")`` -> "3 GPUs"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _size(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"
