"""The simulated jobs: pending, running and done, their attempts, and the snapshot they make.

``SimState`` owns every arrived job and live attempt. Invariants: a job is pending,
running (one live attempt) or done, never two at once; ``pending``, ``running`` and the
``QueueLedger`` change only through ``arrive``/``start``/``stop``/``finish``, each O(1)
in the number of jobs (O(GPUs of the job) for the cluster), so a snapshot costs
O(pending + running + nodes + queues) to assemble and nothing per finished job.

Preemption cost (``CostModel``): an attempt after the first pays ``restart_overhead_s``
before it makes progress; progress is saved at every ``checkpoint_interval_s`` of it
(0: continuously); a stopped attempt keeps only the saved progress. Worked example:
overhead 60 s, checkpoints every 900 s; a job of 3,000 s runs 1,000 s, is preempted
(saved 900 s; 100 s x GPUs lost), restarts and runs 60 + 2,100 s: it ends 2,160 s after
its restart, and 160 s x GPUs were lost in all.

Time limits (``time_limit``, from ``traces.TimeLimits``): a job's limit is in its
pending and running views, as the server's snapshot has it, and an attempt still
running ``time_limit_s`` after it started (restart overhead included) is stopped as the
server's limits loop stops it: the job ends with a timeout, is not requeued (the
server retries a timeout only when the job asks) and goes to ``timed_out``, not
``done``: its work is not finished, so it has no completion time.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

from scheduler.domain.decisions import Placement
from scheduler.domain.snapshot import PendingJob, QueueView, ResourceRequest, RunningJob, Snapshot
from scheduler.domain.usage import decayed_usage
from scheduler.policy.context import PolicyParams
from scheduler.sim.cluster import SimCluster
from scheduler.sim.rows import TraceJob


@dataclass(frozen=True)
class CostModel:
    """What a preemption costs; all in seconds. The defaults make preemption free."""

    restart_overhead_s: float = 0.0  # paid by every attempt after the first
    checkpoint_interval_s: float = 0.0  # progress saved this often; 0: continuously
    stop_delay_s: float = 0.0  # from the preemption decision to the GPUs being free

    def saved_s(self, progress_s: float) -> float:
        """Progress kept by a stop after ``progress_s`` s: 1,000 s at 900 s intervals -> 900."""
        interval = self.checkpoint_interval_s
        if interval <= 0:
            return progress_s
        return math.floor(progress_s / interval + 1e-9) * interval


class SimJob:
    """One arrived job and what happened to it so far (times in s, work in s of runtime)."""

    __slots__ = (
        "attained_gpu_s",
        "attempts",
        "ended_at",
        "first_started_at",
        "lost_gpu_s",
        "pending_since",
        "preemptions",
        "queued_s",
        "remaining_s",
        "request",
        "time_limit_s",
        "trace",
    )

    def __init__(
        self,
        trace: TraceJob,
        request: ResourceRequest,
        now: float,
        time_limit_s: int | None = None,
    ) -> None:
        self.trace = trace
        self.request = request
        self.time_limit_s = time_limit_s
        self.remaining_s = trace.duration_s
        self.attained_gpu_s = 0.0  # GPU-seconds held so far, lost work included
        self.lost_gpu_s = 0.0  # GPU-seconds of restart overhead and unsaved progress
        self.attempts = 0
        self.preemptions = 0
        self.first_started_at: float | None = None
        self.ended_at: float | None = None
        self.pending_since: float | None = now
        self.queued_s = 0.0  # time pending, over all its waits

    def pending_view(self) -> PendingJob:
        t = self.trace
        return PendingJob(
            job_id=t.job_id,
            queue=t.queue,
            priority=t.priority,
            submitted_at=t.submitted_at,
            request=self.request,
            time_limit_s=self.time_limit_s,
            attained_gpu_s=self.attained_gpu_s,
        )


class Attempt:
    """One execution of a job on concrete GPUs; it ends when its work is done or at its
    job's time limit, whichever comes first (``times_out``)."""

    __slots__ = (
        "ends_at",
        "job",
        "overhead_s",
        "started_at",
        "stopping",
        "times_out",
        "view",
        "work_s",
    )

    def __init__(self, job: SimJob, view: RunningJob, overhead_s: float) -> None:
        self.job = job
        self.view = view
        self.started_at = view.started_at
        self.overhead_s = overhead_s
        self.work_s = job.remaining_s  # work left when it started
        self.ends_at = self.started_at + overhead_s + self.work_s
        limit = job.time_limit_s
        timeout_at = math.inf if limit is None else self.started_at + limit
        self.times_out = timeout_at < self.ends_at
        self.ends_at = min(self.ends_at, timeout_at)
        self.stopping = False

    def progress_s(self, now: float) -> float:
        return min(self.work_s, max(0.0, now - self.started_at - self.overhead_s))


class QueueLedger:
    """Per queue: GPUs held (live attempts), pending demand, and decayed usage (GPU-s)."""

    def __init__(self, queues: Sequence[QueueView], half_life_s: float) -> None:
        self.views = {q.name: q for q in queues}
        self.held: Counter[str] = Counter()
        self.pending_gpus: Counter[str] = Counter()
        self.pending_sizes: dict[str, Counter[int]] = {q.name: Counter() for q in queues}
        self.shapes: Counter[ResourceRequest] = Counter()  # requests of all pending jobs
        self.usage = dict.fromkeys(self.views, 0.0)
        self._fields = {  # each view's fields but usage, to rebuild it with a new usage
            q.name: {f.name: getattr(q, f.name) for f in fields(q) if f.name != "usage_gpu_s"}
            for q in queues
        }
        self._half_life_s = half_life_s
        self._usage_at: float | None = None
        self._children: dict[str, list[str]] = {}  # an org's usage counts its children's
        for q in queues:
            if q.parent is not None:
                self._children.setdefault(q.parent, []).append(q.name)

    def advance(self, now: float) -> None:
        """Bring usage to ``now``: the server's formula (``domain.usage``), held constant.

        u(t + dt) = u 2^(-dt / half-life) + held x dt, as the server's usage loop does.
        """
        if self._usage_at is not None and now > self._usage_at:
            dt = now - self._usage_at
            for name in self.usage:
                held = self.held[name] + sum(self.held[c] for c in self._children.get(name, ()))
                self.usage[name] = decayed_usage(self.usage[name], dt, self._half_life_s, held * dt)
        self._usage_at = now

    def add_pending(self, queue: str, request: ResourceRequest, sign: int) -> None:
        self.pending_gpus[queue] += sign * request.total_gpus
        self.pending_sizes.setdefault(queue, Counter())[request.total_gpus] += sign
        self.shapes[request] += sign
        if self.shapes[request] == 0:
            del self.shapes[request]
        if self.pending_sizes[queue][request.total_gpus] == 0:
            del self.pending_sizes[queue][request.total_gpus]

    def queue_views(self) -> tuple[QueueView, ...]:
        """The queues as configured, with their usage now (built fast: once per cycle)."""
        usage = self.usage
        return tuple(QueueView(**f, usage_gpu_s=usage[n]) for n, f in self._fields.items())


TimeLimit = Callable[[TraceJob], int | None]  # a job's time limit in s (None: no limit)


def no_time_limit(trace: TraceJob) -> int | None:
    return None


class SimState:
    """Arrived jobs, live attempts and the cluster: everything a snapshot is made of."""

    def __init__(
        self,
        cluster: SimCluster,
        queues: Sequence[QueueView],
        cost: CostModel,
        *,
        half_life_s: float = PolicyParams().usage_half_life_s,
        report_checkpoints: bool = True,
        time_limit: TimeLimit = no_time_limit,
    ) -> None:
        self.cluster = cluster
        self.cost = cost
        self.time_limit = time_limit
        self.ledger = QueueLedger(queues, half_life_s)
        self.jobs: dict[int, SimJob] = {}
        self.pending: dict[int, PendingJob] = {}
        self.attempts: dict[int, Attempt] = {}
        self.running: dict[int, RunningJob] = {}  # attempt id -> its view
        self.done: list[SimJob] = []
        self.timed_out: list[SimJob] = []  # stopped at their time limit (not in done)
        self._next_attempt = 1
        self._report_checkpoints = report_checkpoints and cost.checkpoint_interval_s > 0
        self._checkpoints: list[tuple[float, int]] = []  # (time, attempt id)

    def arrive(self, trace: TraceJob, request: ResourceRequest, now: float) -> SimJob:
        if trace.job_id in self.jobs:
            raise ValueError(f"job {trace.job_id} arrived twice")
        self.ledger.advance(now)
        job = SimJob(trace, request, now, self.time_limit(trace))
        self.jobs[trace.job_id] = job
        self._enqueue(job, now)
        return job

    def start(self, placement: Placement, now: float) -> Attempt:
        """Start a pending job on the placement's GPUs; ValueError if it is not valid."""
        job = self.jobs.get(placement.job_id)
        if job is None or placement.job_id not in self.pending:
            raise ValueError(f"policy placed job {placement.job_id}, which is not pending")
        if len(placement.gpus) != job.request.total_gpus:
            raise ValueError(f"policy placed job {placement.job_id} on {len(placement.gpus)} GPUs")
        self.cluster.allocate(job.trace.job_id, placement.gpus)
        self.ledger.advance(now)
        del self.pending[placement.job_id]
        self.ledger.add_pending(job.trace.queue, job.request, -1)
        self.ledger.held[job.trace.queue] += job.request.total_gpus
        job.queued_s += now - (job.pending_since or now)
        job.pending_since = None
        if job.first_started_at is None:
            job.first_started_at = now
        overhead = self.cost.restart_overhead_s if job.attempts else 0.0
        job.attempts += 1
        attempt = Attempt(job, self._running_view(job, placement, now), overhead)
        self.attempts[attempt.view.attempt_id] = attempt
        self.running[attempt.view.attempt_id] = attempt.view
        self._next_checkpoint(attempt, attempt.started_at + overhead)
        return attempt

    def mark_stopping(self, attempt_id: int) -> Attempt:
        attempt = self.attempts.get(attempt_id)
        if attempt is None:
            raise ValueError(f"policy preempted attempt {attempt_id}, which is not running")
        if not attempt.stopping:
            attempt.stopping = True
            attempt.view = self.running[attempt_id] = replace(attempt.view, stopping=True)
        return attempt

    def stop(self, attempt_id: int, now: float) -> SimJob:
        """End a preempted attempt: keep its saved progress, requeue the job (same submit time)."""
        attempt = self._end(attempt_id, now)
        job = attempt.job
        saved = self.cost.saved_s(attempt.progress_s(now))
        job.remaining_s = attempt.work_s - saved
        job.lost_gpu_s += (now - attempt.started_at - saved) * job.request.total_gpus
        job.preemptions += 1
        self._enqueue(job, now)
        return job

    def finish(self, attempt_id: int, now: float) -> SimJob:
        """End an attempt at its end: its work done, or its time limit reached (timeout)."""
        attempt = self._end(attempt_id, now)
        job = attempt.job
        job.lost_gpu_s += attempt.overhead_s * job.request.total_gpus  # its restart
        job.ended_at = now
        if attempt.times_out:
            job.remaining_s = attempt.work_s - attempt.progress_s(now)
            self.timed_out.append(job)
        else:
            job.remaining_s = 0.0
            self.done.append(job)
        return job

    def snapshot(self, now: float) -> Snapshot:
        """The cluster as the server would show it to the policy at ``now``."""
        self.ledger.advance(now)
        self._refresh_checkpoints(now)
        return Snapshot(
            now=now,
            nodes=self.cluster.views(),
            pending=tuple(self.pending.values()),
            running=tuple(self.running.values()),
            queues=self.ledger.queue_views(),
        )

    def _enqueue(self, job: SimJob, now: float) -> None:
        self.pending[job.trace.job_id] = job.pending_view()
        job.pending_since = now
        self.ledger.add_pending(job.trace.queue, job.request, +1)

    def _end(self, attempt_id: int, now: float) -> Attempt:
        self.ledger.advance(now)
        attempt = self.attempts.pop(attempt_id)
        del self.running[attempt_id]
        job = attempt.job
        gpus = job.request.total_gpus
        self.cluster.release(attempt.view.gpus)
        self.ledger.held[job.trace.queue] -= gpus
        job.attained_gpu_s += (now - attempt.started_at) * gpus
        return attempt

    def _running_view(self, job: SimJob, placement: Placement, now: float) -> RunningJob:
        attempt_id = self._next_attempt
        self._next_attempt += 1
        return RunningJob(
            job_id=job.trace.job_id,
            attempt_id=attempt_id,
            queue=job.trace.queue,
            priority=job.trace.priority,
            gpus=tuple(sorted(placement.gpus)),
            started_at=now,
            time_limit_s=job.time_limit_s,
            attained_gpu_s=job.attained_gpu_s,
        )

    def _next_checkpoint(self, attempt: Attempt, after: float) -> None:
        if not self._report_checkpoints:
            return
        at = after + self.cost.checkpoint_interval_s
        if at < attempt.ends_at:
            heapq.heappush(self._checkpoints, (at, attempt.view.attempt_id))

    def next_checkpoint_at(self) -> float:
        """When the next live attempt reports a checkpoint (inf: none will)."""
        heap, attempts = self._checkpoints, self.attempts
        while heap and heap[0][1] not in attempts:
            heapq.heappop(heap)  # its attempt ended before it
        return heap[0][0] if heap else math.inf

    def _refresh_checkpoints(self, now: float) -> None:
        """Report the checkpoints taken by ``now`` in the running views (as agents would)."""
        heap = self._checkpoints
        while heap and heap[0][0] <= now:
            at, attempt_id = heapq.heappop(heap)
            attempt = self.attempts.get(attempt_id)
            if attempt is None:
                continue  # ended before this checkpoint
            view = replace(attempt.view, last_checkpoint_at=at)
            attempt.view = self.running[attempt_id] = view
            self._next_checkpoint(attempt, at)
