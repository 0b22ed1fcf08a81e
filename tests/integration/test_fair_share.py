"""Fair share end to end, in process: a Runtime on each backend, fake agents, cycles by hand.

The server's pieces run as they do in ``corral server``: ``prepare`` upgrades the
database, queues and jobs go through the services, the agents sync through the
services' agent sync (``wait_s=0``: no long poll), and ``run_cycle`` is called where the
schedule loop would run it. A simulated step finishes the oldest running attempts,
runs a cycle, and lets the agents start (and stop) what it decided.

Two queues with equal weights and guarantees, both with a backlog of 1-GPU jobs longer
than the cluster:
- their shares converge to equal, within one job's GPUs (fair-share ordering);
- an idle queue's share is used by the other (work conservation), and given back when
  it gets jobs: through completions, and through preemption (``reclaim``) when it is
  below its guarantee.

A part that needs a policy piece the registry does not have yet is skipped, naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from scheduler.cycle import CycleReport, run_cycle
from scheduler.domain.spec import JobSpec, QueueSpec, Resources
from scheduler.domain.sync import AttemptState, NodeFacts, SyncRequest
from scheduler.domain.views import QueueInfo
from scheduler.policy import registry
from scheduler.runtime import Runtime
from scheduler.services import agents, jobs, queues
from scheduler.services.bootstrap import prepare
from scheduler.settings import PolicyParams, ServerSettings
from scheduler.store.db import Database
from tests.factories import exited, node_facts, report

NODES = ("n1", "n2")
GPUS_PER_NODE = 4
CAPACITY = len(NODES) * GPUS_PER_NODE
BACKLOG = 3 * CAPACITY  # jobs per queue: longer than the cluster
REGISTRIES = {
    "ordering": registry.ORDERINGS,
    "admission": registry.ADMISSIONS,
    "preemption": registry.PREEMPTIONS,
    "backfill": registry.BACKFILLS,
}


def require(**pieces: str) -> dict[str, str]:
    """These policy pieces (kind=name), or skip the test naming those not registered yet."""
    missing = [f"{kind} {name!r}" for kind, name in pieces.items() if name not in REGISTRIES[kind]]
    if missing:
        pytest.skip(f"the policy registry has no {', '.join(missing)} yet")
    return pieces


@dataclass
class FakeAgent:
    """An agent that does what the server asks at once; it finishes attempts on demand."""

    facts: NodeFacts
    running: set[int] = field(default_factory=set)
    stopping: set[int] = field(default_factory=set)

    def sync(self, rt: Runtime, finish: set[int] | frozenset[int] = frozenset()) -> None:
        reports = []
        for attempt_id in sorted(self.running):
            if attempt_id in self.stopping:  # SIGTERM, it checkpoints and exits
                reports.append(exited(attempt_id, -15, stopped_by_agent=True))
            elif attempt_id in finish:
                reports.append(exited(attempt_id, 0))
            else:
                reports.append(report(attempt_id))
        request = SyncRequest(node=self.facts, attempts=reports, wait_s=0)
        reply = asyncio.run(agents.sync(rt, request))
        gone = {r.attempt_id for r in reports if r.state is AttemptState.EXITED}
        self.running = (self.running - gone) | {launch.attempt_id for launch in reply.run}
        self.stopping = {stop.attempt_id for stop in reply.stop} & self.running


@dataclass
class Cluster:
    rt: Runtime
    agents: list[FakeAgent]
    reports: list[CycleReport] = field(default_factory=list)

    def sync_all(self, finish: set[int] | frozenset[int] = frozenset()) -> None:
        for agent in self.agents:
            agent.sync(self.rt, finish)

    def step(self, finishing: int = 0) -> dict[str, QueueInfo]:
        """Finish the ``finishing`` oldest running attempts, run a cycle, start its work."""
        running = sorted(a for agent in self.agents for a in agent.running - agent.stopping)
        self.sync_all(set(running[:finishing]))
        self.reports.append(run_cycle(self.rt))
        self.sync_all()  # the agents get their new attempts and stops
        self.sync_all()  # ... report the new ones running, the stopped ones gone
        return self.queues()

    def queues(self) -> dict[str, QueueInfo]:
        return {q.name: q for q in queues.list_queues(self.rt).queues}

    def submit(self, queue: str, count: int) -> None:
        for i in range(count):
            spec = JobSpec(
                name=f"{queue}-{i}", queue=queue, command=["train"], resources=Resources(gpus=1)
            )
            jobs.submit(self.rt, spec)


def held(shown: dict[str, QueueInfo]) -> tuple[int, int]:
    return shown["a"].allocated_gpus, shown["b"].allocated_gpus


@pytest.fixture
def make_cluster(upgraded_database_url: str, tmp_path: Path) -> Iterator[object]:
    made: list[Runtime] = []

    def make(guarantee: int, **pieces: str) -> Cluster:
        # attempts here are seconds old on the wall clock: no minimum runtime
        params = replace(PolicyParams(), min_runtime_s=0.0)
        settings = ServerSettings(
            data_dir=tmp_path, database_url=upgraded_database_url, params=params, **pieces
        )
        rt = Runtime(db=Database(upgraded_database_url), settings=settings)
        made.append(rt)
        prepare(rt)
        for name in ("a", "b"):
            queues.create_queue(rt, QueueSpec(name=name, guaranteed_gpus=guarantee))
        cluster = Cluster(rt, [FakeAgent(node_facts(n, GPUS_PER_NODE)) for n in NODES])
        cluster.sync_all()  # the nodes register
        return cluster

    yield make
    for rt in made:
        rt.db.dispose()


@pytest.mark.parametrize("preemption", ["none", "reclaim"])
def test_an_idle_queues_share_is_lent_to_the_other(make_cluster: object, preemption: str) -> None:
    pieces = require(preemption=preemption)
    cluster: Cluster = make_cluster(guarantee=2, **pieces)  # type: ignore[operator]
    cluster.submit("a", BACKLOG)
    shown = cluster.step()
    assert held(shown) == (CAPACITY, 0)  # work-conserving: b's share is lent to a
    assert (shown["a"].borrowed_gpus, shown["b"].borrowed_gpus) == (CAPACITY - 2, 0)
    assert shown["a"].fair_share_gpus == pytest.approx(CAPACITY)  # b asks for nothing
    assert shown["a"].pending == BACKLOG - CAPACITY
    for _ in range(3):  # a completion frees a GPU: a takes it again, nothing is preempted
        assert held(cluster.step(finishing=2)) == (CAPACITY, 0)
    assert sum(r.preempted for r in cluster.reports) == 0


def test_equal_queues_converge_to_equal_shares(make_cluster: object) -> None:
    pieces = require(ordering="fair_share", preemption="none")  # through completions only
    cluster: Cluster = make_cluster(guarantee=2, **pieces)  # type: ignore[operator]
    cluster.submit("a", BACKLOG)
    assert held(cluster.step()) == (CAPACITY, 0)
    cluster.submit("b", BACKLOG)  # b arrives late: a holds the whole cluster
    history = [held(cluster.step(finishing=2)) for _ in range(12)]
    assert all(a + b == CAPACITY for a, b in history), history  # never an idle GPU
    settled = history[CAPACITY // 4 :]  # 2 completions a step; b needs CAPACITY/2 of them
    assert all(abs(a - b) <= 1 for a, b in settled), history
    shown = cluster.queues()
    share = CAPACITY / 2
    assert shown["a"].fair_share_gpus == pytest.approx(share)
    assert shown["b"].fair_share_gpus == pytest.approx(share)


def test_a_returning_queue_gets_its_share_back_through_completions(make_cluster: object) -> None:
    pieces = require(ordering="fair_share", preemption="none")
    cluster: Cluster = make_cluster(guarantee=2, **pieces)  # type: ignore[operator]
    cluster.submit("a", BACKLOG)
    assert held(cluster.step()) == (CAPACITY, 0)
    cluster.submit("b", 2)  # a little work: b takes what it asks, a keeps the rest
    steps = [held(cluster.step(finishing=1)) for _ in range(3)]
    assert steps[-1] == (CAPACITY - 2, 2), steps
    assert all(r.preempted == 0 for r in cluster.reports)  # only completions gave it back


def test_a_returning_queue_below_its_guarantee_reclaims_by_preemption(
    make_cluster: object,
) -> None:
    pieces = require(ordering="fair_share", preemption="reclaim")
    guarantee = CAPACITY // 2
    cluster: Cluster = make_cluster(guarantee=guarantee, **pieces)  # type: ignore[operator]
    cluster.submit("a", BACKLOG)
    assert held(cluster.step()) == (CAPACITY, 0)
    cluster.submit("b", BACKLOG)
    shown = cluster.step()  # no completion: only preemption can give b its guarantee
    assert cluster.reports[-1].preempted == guarantee
    assert shown["a"].pending == BACKLOG - CAPACITY + guarantee  # requeued, not failed
    shown = cluster.step()  # the preempted GPUs are free now
    assert held(shown) == (guarantee, guarantee)
    assert sum(r.preempted for r in cluster.reports) == guarantee  # and nothing more
    for _ in range(3):
        assert held(cluster.step()) == (guarantee, guarantee)  # no preemption cycles
    requeued = [
        j
        for j in jobs.list_jobs(
            cluster.rt, statuses=["pending"], queue="a", name=None, limit=1000, before_id=None
        ).jobs
        if j.termination_reason == "preempted"
    ]
    assert len(requeued) == guarantee
