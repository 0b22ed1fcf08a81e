"""What every piece of a policy sees in one ``decide``: the snapshot and what follows from it.

``make_context`` derives, once per cycle, each queue's held GPUs, its demand and its fair
share (``fairshare.fair_shares``). During the decision pass the context is the working
state: ``charge`` records a placement against its queue so later admission checks and
orderings see it. Nothing here reads a clock or does I/O.

The pieces of a policy, each chosen by name in ``registry``:
- ``Ordering(ctx) -> list[PendingJob]``: every pending job once, first considered first.
- ``Admission(ctx, job) -> Wait | None``: quota rules (caps, borrow limits, guarantees)
  that may hold a job back even when GPUs are free; None admits it.
- ``Place(job, pool) -> Placement | None``: the GPUs for one job from the working pool.
- ``Pass(ctx, ordered, place, admit) -> Decisions``: the decision pass (placements and a
  wait for every other job; backfill and reservations live here).
- ``Preempt(ctx, decisions, place) -> tuple[Preemption, ...]``: running attempts to stop.

``ctx.extra`` keys the pieces share (the pass writes them; readers treat them as absent
when missing):
- ``"pool"``: the working ``Pool`` as the pass leaves it (its placements taken). Readers
  work on ``pool.copy()`` and never mutate it. Read by ``preemption.reclaim``.
- ``"reservations"``: a sequence of reservations of the backfill pass, each with
  ``job_id: int`` (the waiting job), ``gpus: tuple[GpuRef, ...]`` (the GPUs it waits
  for) and ``reserved_at: float`` (when it expects them). Read by ``preemption.reclaim``:
  a reservation due (``reserved_at <= now``) preempts its preemptible occupiers.
  The backfill pass writes ``backfill.Reservation``s, at most one per queue, their GPUs
  disjoint; ``reserved_at`` is ``inf`` when the GPUs wait on attempts without a time
  limit, and ``occupiers`` names the preemptible attempts now holding some of ``gpus``.
- ``"reclaim_allocated"``: ``preemption.reclaim``'s own cache of the snapshot's allocated
  GPUs as ``(node, index)`` tuples (built once per context).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Protocol

from scheduler.domain.decisions import Decisions, Placement, Preemption, Wait
from scheduler.domain.snapshot import (
    GpuRef,
    NodeView,
    PendingJob,
    QueueView,
    ResourceRequest,
    RunningJob,
    Snapshot,
)
from scheduler.policy.fairshare import fair_shares
from scheduler.policy.shape import shape_of

DAY_S = 86_400.0
_gpu_key = attrgetter("node", "index")  # a GpuRef as a plain (node, index) tuple


@dataclass(frozen=True)
class PolicyParams:
    """Tunables of the policies (settings fill them; defaults suit a research cluster)."""

    usage_half_life_s: float = 7 * DAY_S  # decayed usage breaks fair-share ties (Slurm-like)
    min_runtime_s: float = 300.0  # an attempt younger than this is never preempted
    las_thresholds_gpu_s: tuple[float, ...] = (3_600.0, 36_000.0)  # 2D-LAS queue boundaries
    # service preemption (``reclaim_las``) stops only attempts that would lose at most
    # this much work: seconds since their last checkpoint (or their start); inf: any
    service_loss_s: float = math.inf
    # backfill: a reservation counts a preemptible attempt's GPUs as free from when it may
    # be preempted (start + min_runtime_s), so preemption can clear a reservation that is
    # due; False: only time limits count (suits the "none" preemption)
    reserve_preemptible_gpus: bool = True
    # fair_share_sjf: a job pending this long since its submission goes by submit time.
    # Long, because in a burst a busy queue's whole backlog waits hours: a short aging
    # turns it back into FIFO exactly when shortest-first matters (Philly week, time
    # limits twice the run: 4 h 1.47x the JCT bound, 24 h 1.32x, none 1.30x; 24 h also
    # cuts the longest wait from 42 h to 32 h).
    sjf_aging_s: float = 24 * 3_600.0


class Pool(Protocol):
    """The working set of free GPUs during a pass (see ``pool.FreePool``)."""

    nodes: Sequence[NodeView]

    def take(self, placement: Placement) -> None: ...
    def release(self, gpus: Iterable[GpuRef]) -> None: ...
    def withhold(self, gpus: Iterable[GpuRef]) -> None: ...  # as if taken (a reservation)
    def copy(self) -> Pool: ...

    # what a placement asks of the pool (rules and costs: ``pool.FreePool``)
    def tightest(self, request: ResourceRequest) -> tuple[str, tuple[int, ...]] | None: ...
    def idle_nodes(
        self, request: ResourceRequest, count: int
    ) -> list[tuple[str, tuple[int, ...]]]: ...
    def gpuless_nodes(self, count: int) -> list[str]: ...


@dataclass
class QueueState:
    """One queue during a pass: its view, what it holds, what it asks for, its share."""

    view: QueueView
    held: int = 0  # GPUs held by its live attempts (+ placements of this pass)
    pending_gpus: int = 0  # GPUs its pending jobs ask for
    fair_share: float = 0.0
    # GPUs held by type (casefolded type name): live attempts by the GPUs they hold,
    # placements of this pass only when the job asks for a type
    held_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def deficit(self) -> float:
        """How far it is below its fair share (negative: above it)."""
        return self.fair_share - self.held


@dataclass
class Context:
    snapshot: Snapshot
    params: PolicyParams
    queues: dict[str, QueueState]
    capacity: int  # healthy GPUs on schedulable nodes
    extra: dict[str, object] = field(default_factory=dict)  # per-pass scratch for pieces
    # every GPU's type by (node, index) (``gpu_types_of``; None: not worked out yet)
    gpu_types: dict[tuple[str, int], str] | None = None

    def queue(self, name: str) -> QueueState:
        state = self.queues.get(name)
        if state is None:  # a job of a queue the snapshot does not list: weight 1, no quota
            state = self.queues[name] = QueueState(QueueView(name=name))
        return state

    def charge(self, job: PendingJob) -> None:
        """Count a placement of this pass against its queue (and its org)."""
        _add_held(self, job.queue, job.request.total_gpus, job.request.gpu_type)


def make_context(snapshot: Snapshot, params: PolicyParams | None = None) -> Context:
    queues = {q.name: QueueState(q) for q in snapshot.queues}
    shape = shape_of(snapshot.nodes)
    gpu_types = shape.gpu_types
    params = params or PolicyParams()
    ctx = Context(snapshot, params, queues, shape.capacity, gpu_types=gpu_types)
    held: dict[tuple[str, str | None], int] = {}  # GPUs by (queue, type): one charge a pair
    for running in snapshot.running:
        if running.stopping:
            continue
        queue = running.queue
        for gpu_type, gpus in _types_held(running, gpu_types):
            key = (queue, gpu_type)
            held[key] = held.get(key, 0) + gpus
    for (queue, gpu_type), gpus in held.items():
        _add_held(ctx, queue, gpus, gpu_type)
    pending: dict[str, int] = {}  # summed locally: 50,000 jobs, a few dozen queues
    for job in snapshot.pending:
        request = job.request  # ``total_gpus``, without the property call
        pending[job.queue] = pending.get(job.queue, 0) + request.gpus * request.nodes
    for name, gpus in pending.items():
        ctx.queue(name).pending_gpus += gpus
    demand = {name: float(q.held + q.pending_gpus) for name, q in ctx.queues.items()}
    views = [q.view for q in ctx.queues.values()]
    for name, share in fair_shares(views, demand, ctx.capacity).items():
        ctx.queue(name).fair_share = share
    return ctx


_TypesHeld = tuple[tuple[str | None, int], ...]
_TYPES_HELD: dict[int, tuple[RunningJob, dict[tuple[str, int], str], _TypesHeld]] = {}
TYPES_HELD_KEPT = 16_384  # attempts whose GPU types are remembered


def _types_held(running: RunningJob, gpu_types: dict[tuple[str, int], str]) -> _TypesHeld:
    """How many GPUs of each type (None: a GPU the nodes do not show) the attempt holds,
    types in the order of its GPUs. Remembered by attempt view and by the nodes' shape
    (whose ``gpu_types`` it reads), both kept with the answer so that their ids stay
    theirs: the simulator keeps an attempt's view between checkpoints; a server's fresh
    views are only missed. At most ``TYPES_HELD_KEPT``; past that the oldest go."""
    known = _TYPES_HELD.get(id(running))
    if known is not None and known[0] is running and known[1] is gpu_types:
        return known[2]
    found = tuple(Counter(map(gpu_types.get, map(_gpu_key, running.gpus))).items())
    if len(_TYPES_HELD) >= TYPES_HELD_KEPT:
        _TYPES_HELD.pop(next(iter(_TYPES_HELD)))
    _TYPES_HELD[id(running)] = (running, gpu_types, found)
    return found


def gpu_types_of(nodes: Iterable[NodeView]) -> dict[tuple[str, int], str]:
    """Every GPU's type by (node, index): plain tuples hash in C, ``GpuRef``s in Python.

    The nodes' shape's (``shape.shape_of``): shared, never to be changed."""
    return shape_of(nodes if isinstance(nodes, tuple) else tuple(nodes)).gpu_types


def _add_held(ctx: Context, queue: str, gpus: int, gpu_type: str | None = None) -> None:
    leaf = ctx.queue(queue)
    states = [leaf] if leaf.view.parent is None else [leaf, ctx.queue(leaf.view.parent)]
    for state in states:
        state.held += gpus
        if gpu_type is not None:
            key = gpu_type.casefold()
            state.held_by_type[key] = state.held_by_type.get(key, 0) + gpus


Ordering = Callable[[Context], list[PendingJob]]
Admission = Callable[[Context, PendingJob], Wait | None]

_BY_KIND: set[Admission] = set()


def judges_by_kind(admit: Admission) -> Admission:
    """Mark an admission whose verdict on a job follows from the job's queue, request,
    preemptible flag and time limit and from what the queues hold, which only
    ``Context.charge`` changes. A pass may then take an admitted job's verdict for the
    next job of its kind until the next charge (``backfill.walk``)."""
    _BY_KIND.add(admit)
    return admit


def by_kind(admit: Admission) -> bool:
    """Whether ``admit`` was marked with ``judges_by_kind``."""
    return admit in _BY_KIND


def job_kind(job: PendingJob) -> tuple[object, ...]:
    """What a job is judged by in a pass: jobs of one kind start, reserve or wait alike
    while the pass's state stays as it is (queue, request, preemptible, time limit)."""
    request = job.request
    return (
        job.queue,
        request.gpus,
        request.nodes,
        request.gpu_type,
        request.gpu_memory_mib,
        job.preemptible,
        job.time_limit_s,
    )


Place = Callable[[PendingJob, Pool], Placement | None]
Pass = Callable[[Context, Sequence[PendingJob], Place, Admission], Decisions]
Preempt = Callable[[Context, Decisions, Place], tuple[Preemption, ...]]
