"""The event loop: arrivals, attempt ends and stops on a virtual clock, a cycle per event time.

Each step of the loop takes the earliest event time ``now`` and

1. measures: the recorder integrates the state that held since the previous time;
2. applies every event at ``now`` as one batch: attempt ends, preempted attempts'
   stops (cost model in ``state``), then arrivals (the trace is sorted by submit time);
3. runs one cycle as the server does: snapshot -> ``Policy.decide`` -> apply
   (placements start attempts and schedule their ends; preemptions mark the attempt
   stopping and schedule its stop ``stop_delay_s`` later).

So the events of one virtual time are one burst with one cycle after them: the server's
loop (``loops/schedule.py``) runs a cycle on an event and folds the events that come
during its minimum gap into the next one; a trace's distinct times are seconds apart,
far more than that gap, so only events at the very same time share a cycle
(``cycle_interval_s`` widens a burst).

With ``cycle_interval_s`` > 0 cycles are at least that far apart (a periodic
scheduler, or a way to replay huge traces faster): a cycle due sooner is deferred to
the end of the interval, its events waiting as a busy server's would.

A cycle is skipped when it cannot change anything: no job is pending, or the policy
cannot preempt and no pending request fits the free GPUs of enough nodes (a necessary
condition of any placement, ``SimCluster.could_fit``). A stop at ``now`` itself (no
stop delay) is a new event at the same time, so the freed GPUs get a second cycle at
that instant, as the server's cycle is woken when an attempt ends. The end an attempt
would have reached had it not been stopped (and a stop after an attempt ended by
itself) is no event: its time gets no cycle, as no server would wake then. A policy
that keeps preempting and placing at one instant (thrashing) gets ``MAX_CYCLES_PER_INSTANT``
cycles there, then none until the next event; ``thrashing_instants`` counts it.

The clock alone can change a decision too: a backfill reservation falls due (its
occupiers may then be preempted), an attempt passes the policy's ``min_runtime_s`` and
may be preempted for a queue owed its guarantee. The server acts on these at its
periodic pass (every few seconds); the simulator, which otherwise wakes only on events,
wakes up (``wake_ups``, on by default) at the earliest of: the earliest
``estimated_start`` after ``now`` among the cycle's waits (a reservation's start, when
the policy announces one), and, for a policy that may preempt and while some queue with
pending jobs holds less than its guarantee (always, with orgs or type quotas), the time
the next live attempt passes ``min_runtime_s``. Each cycle replaces the wake-up an
earlier one asked for; a wake-up is no event (``EngineStats.wake_ups`` counts them).
Other drifts with time (decayed usage, 2D-LAS service bands) wait for the next event.

Cost per event time: O(events + queues + GPU types) of bookkeeping, plus the cycle
(snapshot assembly O(pending + running + nodes), then ``decide``).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.domain.decisions import Decisions
from scheduler.domain.snapshot import ResourceRequest
from scheduler.policy import Policy
from scheduler.policy.context import PolicyParams
from scheduler.sim.metrics import Recorder
from scheduler.sim.rows import TraceJob
from scheduler.sim.state import SimState

END, STOP, TICK, WAKE = 0, 1, 2, 3  # event kinds; at one time, ends go before stops
NO_ATTEMPT = -1  # the attempt id of a TICK (a deferred cycle) and of a WAKE (a wake-up)
MAX_CYCLES_PER_INSTANT = 100


@dataclass
class EngineStats:
    events: int = 0  # arrivals, attempt ends and stops applied
    event_times: int = 0  # distinct virtual times with events (loop steps)
    cycles: int = 0  # decide() calls
    skipped_cycles: int = 0
    idle_cycles: int = 0  # cycles that decided nothing but waits
    thrashing_instants: int = 0  # times with MAX_CYCLES_PER_INSTANT cycles (then no more)
    wake_ups: int = 0  # times woken by the clock alone (``Engine`` wake-ups)
    placements: int = 0
    preemptions: int = 0
    wall_s: float = 0.0  # wall-clock time of the whole loop
    cpu_s: float = 0.0  # its CPU time (on a shared host wall time also counts the others)
    decide_wall_s: float = 0.0  # of which inside decide()
    decide_cpu_s: float = 0.0

    @property
    def own_us_per_event(self) -> float:
        """The simulator's own CPU time per event (everything but ``decide``), in us."""
        own = self.cpu_s - self.decide_cpu_s
        return 1e6 * own / self.events if self.events else 0.0

    @property
    def us_per_event(self) -> float:
        """CPU time per event, ``decide`` included, in us."""
        return 1e6 * self.cpu_s / self.events if self.events else 0.0

    @property
    def decide_us_per_cycle(self) -> float:
        """CPU time of one ``decide``, in us."""
        return 1e6 * self.decide_cpu_s / self.cycles if self.cycles else 0.0


class Engine:
    """Replays ``arrivals`` (sorted by submit time) through ``policy`` on ``state``."""

    def __init__(
        self,
        state: SimState,
        arrivals: Sequence[tuple[TraceJob, ResourceRequest]],
        policy: Policy,
        recorder: Recorder,
        *,
        may_preempt: bool = True,
        cycle_interval_s: float = 0.0,
        wake_ups: bool = True,
        min_runtime_s: float = PolicyParams().min_runtime_s,
        checkpoint_wake_ups: bool = False,
    ) -> None:
        self.state = state
        self.cycle_interval_s = cycle_interval_s
        self.arrivals = arrivals
        self.policy = policy
        self.recorder = recorder
        self.may_preempt = may_preempt
        self.stats = EngineStats()
        self._next_arrival = 0
        self._events: list[tuple[float, int, int]] = []  # (time, kind, attempt id)
        self._instant = (float("-inf"), 0)  # (time of the last cycle, cycles at that time)
        self._next_cycle = float("-inf")  # no cycle before this (cycle_interval_s)
        self._tick_at: float | None = None  # a deferred cycle's time, if one is due
        self.wake_ups = wake_ups
        self.min_runtime_s = min_runtime_s
        self.checkpoint_wake_ups = checkpoint_wake_ups
        self._wake_at: float | None = None  # the wake-up the last cycle asked for, if any
        self._young: deque[tuple[float, int]] = deque()  # (start, attempt id), start order
        views = state.ledger.views.values()
        self._guarantees = [(q.name, q.guaranteed_gpus) for q in views if q.guaranteed_gpus > 0]
        self._nested = any(q.parent is not None or q.type_quotas for q in views)

    def run(self) -> EngineStats:
        started, cpu = time.perf_counter(), time.process_time()
        while (now := self._next_time()) is not None:
            self.recorder.advance(now)  # 1. measure the interval that ends now
            self._apply_events(now)  # 2. this time's events, as one batch
            self._cycle(now)  # 3. snapshot -> decide -> apply
            self.stats.event_times += 1
        self.stats.wall_s = time.perf_counter() - started
        self.stats.cpu_s = time.process_time() - cpu
        return self.stats

    def _next_time(self) -> float | None:
        self._drop_stale()
        arrival = None
        if self._next_arrival < len(self.arrivals):
            arrival = self.arrivals[self._next_arrival][0].submitted_at
        event = self._events[0][0] if self._events else None
        if arrival is None or (event is not None and event < arrival):
            return event
        return arrival

    def _drop_stale(self) -> None:
        """Drop ends and stops of attempts that are gone: a preempted attempt's end, a
        finished one's stop; and wake-ups a later cycle replaced. They are not events
        (the server would not wake), so their times get no cycle."""
        events, attempts = self._events, self.state.attempts
        while events:
            at, kind, attempt_id = events[0]
            if kind == TICK or (kind == WAKE and at == self._wake_at) or attempt_id in attempts:
                return
            heapq.heappop(events)

    def _apply_events(self, now: float) -> None:
        state, events = self.state, self._events
        while events and events[0][0] <= now:
            at, kind, attempt_id = heapq.heappop(events)
            if kind == TICK:
                self._tick_at = None
                continue
            if kind == WAKE:
                if at == self._wake_at:  # else a later cycle replaced it
                    self._wake_at = None
                    self.stats.wake_ups += 1
                continue
            if attempt_id not in state.attempts:
                continue  # it ended before: a finished job's stop, a stopped job's end
            if kind == END:
                state.finish(attempt_id, now)
            else:
                state.stop(attempt_id, now)
            self.stats.events += 1
        arrivals = self.arrivals
        while self._next_arrival < len(arrivals):
            trace, request = arrivals[self._next_arrival]
            if trace.submitted_at > now:
                break
            state.arrive(trace, request, now)
            self._next_arrival += 1
            self.stats.events += 1

    def _cycle(self, now: float) -> None:
        if not self._may_change_anything():
            self.stats.skipped_cycles += 1
            return
        if now < self._next_cycle:  # too soon after the last one: defer it (one tick)
            if self._tick_at is None:
                self._tick_at = self._next_cycle
                heapq.heappush(self._events, (self._next_cycle, TICK, NO_ATTEMPT))
            self.stats.skipped_cycles += 1
            return
        self._next_cycle = now + self.cycle_interval_s
        state = self.state
        if not self._another_cycle_now(now):
            self.stats.skipped_cycles += 1
            return
        snapshot = state.snapshot(now)
        started, cpu = time.perf_counter(), time.process_time()
        decisions = self.policy.decide(snapshot)
        self.stats.decide_cpu_s += time.process_time() - cpu
        self.stats.decide_wall_s += time.perf_counter() - started
        self.stats.cycles += 1
        self.recorder.count_waits(decisions)
        if not (decisions.placements or decisions.preemptions):
            self.stats.idle_cycles += 1
        self._apply(decisions, now)
        if self.wake_ups:
            self._plan_wake_up(decisions, now)

    def _may_change_anything(self) -> bool:
        """False when no decision can come out: nothing pending, or nothing could be placed
        (no pending request fits the free GPUs anywhere) by a policy that cannot preempt."""
        state = self.state
        if not state.pending:
            return False
        if self.may_preempt:
            return True
        return any(state.cluster.could_fit(request) for request in state.ledger.shapes)

    def _apply(self, decisions: Decisions, now: float) -> None:
        state = self.state
        for placement in decisions.placements:
            attempt = state.start(placement, now)
            heapq.heappush(self._events, (attempt.ends_at, END, attempt.view.attempt_id))
            if self.wake_ups and self.may_preempt:
                self._young.append((now, attempt.view.attempt_id))
        self.stats.placements += len(decisions.placements)
        for preemption in decisions.preemptions:
            was_stopping = state.attempts.get(preemption.attempt_id)
            already = was_stopping is not None and was_stopping.stopping
            attempt = state.mark_stopping(preemption.attempt_id)
            if attempt.job.trace.job_id != preemption.job_id:
                raise ValueError(
                    f"policy preempted attempt {preemption.attempt_id} as job "
                    f"{preemption.job_id}; it belongs to job {attempt.job.trace.job_id}"
                )
            if not already:
                stop_at = now + state.cost.stop_delay_s
                heapq.heappush(self._events, (stop_at, STOP, preemption.attempt_id))
                self.stats.preemptions += 1

    def _another_cycle_now(self, now: float) -> bool:
        """False once ``now`` had ``MAX_CYCLES_PER_INSTANT`` cycles (the policy thrashes)."""
        last, count = self._instant
        count = count + 1 if now == last else 1
        self._instant = (now, count)
        if count == MAX_CYCLES_PER_INSTANT + 1:
            self.stats.thrashing_instants += 1
        return count <= MAX_CYCLES_PER_INSTANT

    # -- wake-ups: the clock alone may change a decision ---------------------------

    def _plan_wake_up(self, decisions: Decisions, now: float) -> None:
        """Wake at the earliest future time the cycle's decisions could change by time
        alone (see the module), replacing the wake-up an earlier cycle asked for."""
        at = math.inf
        for wait in decisions.waits:  # a reservation's start: due then, its holder's
            start = wait.estimated_start
            if start is not None and now < start < at:
                at = start
        if self.may_preempt and decisions.waits and self._may_be_owed():
            at = min(at, self._next_settled(now))
        if self.checkpoint_wake_ups and self.may_preempt and decisions.waits:
            at = min(at, self.state.next_checkpoint_at())
        wake = None if math.isinf(at) else at
        if wake != self._wake_at:
            self._wake_at = wake
            if wake is not None:
                heapq.heappush(self._events, (wake, WAKE, NO_ATTEMPT))

    def _may_be_owed(self) -> bool:
        """Whether a queue may be owed GPUs: one with pending jobs holds less than its
        guarantee (a necessary condition; always True with orgs or type quotas)."""
        if self._nested:
            return True
        ledger = self.state.ledger
        return any(
            ledger.held[name] < owed and ledger.pending_gpus[name] > 0
            for name, owed in self._guarantees
        )

    def _next_settled(self, now: float) -> float:
        """When the next live attempt passes ``min_runtime_s`` and may be preempted (inf:
        none is that young)."""
        young, attempts, min_runtime_s = self._young, self.state.attempts, self.min_runtime_s
        while young:
            started, attempt_id = young[0]
            attempt = attempts.get(attempt_id)
            if attempt is not None and not attempt.stopping and started + min_runtime_s > now:
                return started + min_runtime_s
            young.popleft()
        return math.inf
