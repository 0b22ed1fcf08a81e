"""The simulator and the live server see the same cluster and make the same decisions.

One scenario is built twice: in a real store (SQLite, and PostgreSQL when available)
through the functions the server uses, and in a ``SimState`` through the simulator's
own path (arrivals, placements). Then:

1. the simulator's snapshot equals ``build_snapshot``'s (same nodes, GPUs, holders,
   pending and running jobs, queues and decayed usage);
2. every composition of the registries decides the same on both snapshots;
3. a server ``run_cycle`` leaves the store in the state the simulator reaches by
   applying its own decisions (same attempts on the same GPUs, same stops asked).

Scenario at t = 1,000 s: nodes a000 (4 GPUs), b000 (4), c000 (2); queue ``default``
holds a000 and b000 since t = 10 (jobs 1 and 2); ``research`` (guarantee 6) waits with
4 and 2 GPUs (jobs 3 and 4, the second at priority 5); ``default`` also waits with 1
GPU and with 2 nodes x 4 GPUs (jobs 5 and 6). c000 is free.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from scheduler.cycle import run_cycle
from scheduler.domain.decisions import Decisions, Placement
from scheduler.domain.snapshot import GpuRef, ResourceRequest, Snapshot
from scheduler.domain.spec import QueueSpec
from scheduler.policy import make_policy
from scheduler.policy.context import PolicyParams
from scheduler.policy.registry import ADMISSIONS, BACKFILLS, ORDERINGS, PLACEMENTS, PREEMPTIONS
from scheduler.runtime import Runtime
from scheduler.settings import ServerSettings
from scheduler.sim.cluster import ClusterSpec, NodeGroup, SimCluster
from scheduler.sim.queues import view_of
from scheduler.sim.rows import TraceJob
from scheduler.sim.state import CostModel, SimState
from scheduler.store.db import Database
from scheduler.store.queues import create_queue
from scheduler.store.snapshot import build_snapshot
from scheduler.store.usage import accrue_usage
from tests.factories import A100, A100_MIB, add_job, at, node_facts, place, placement, sync

HALF_LIFE_S = PolicyParams().usage_half_life_s
NOW_S = 1000.0
QUEUES = (QueueSpec(name="default"), QueueSpec(name="research", guaranteed_gpus=6))
NODES = (("a", 4), ("b", 4), ("c", 2))


@dataclass(frozen=True)
class Job:
    submit_s: float
    gpus: int  # per node
    nodes: int = 1
    queue: str = "default"
    priority: int = 0
    placed_on: str | None = None  # node it runs on since t = 10, if any


JOBS = (  # job id = position + 1, as the store numbers them
    Job(1, 4, placed_on="a000"),
    Job(2, 4, placed_on="b000"),
    Job(20, 4, queue="research"),
    Job(30, 2, queue="research", priority=5),
    Job(40, 1),
    Job(50, 4, nodes=2),
)


def _server(db: Database) -> None:
    for name, gpus in NODES:
        sync(db, node_facts(f"{name}000", gpus))
    with db.write() as session:
        for spec in QUEUES:
            create_queue(session, spec, at(0))
        accrue_usage(session, at(0), HALF_LIFE_S)  # usage counts from here
        for job in JOBS:
            add_job(
                session,
                job.gpus,
                job.nodes,
                now=at(job.submit_s),
                queue=job.queue,
                priority=job.priority,
            )
        for job_id, job in enumerate(JOBS, start=1):
            if job.placed_on:
                place(session, placement(job_id, {job.placed_on: range(job.gpus)}), now=at(10))
    with db.write() as session:
        accrue_usage(session, at(NOW_S), HALF_LIFE_S)


def _server_snapshot(db: Database) -> Snapshot:
    with db.read() as session:
        return build_snapshot(session, at(NOW_S))


def _sim() -> SimState:
    groups = tuple(NodeGroup(name, 1, gpus, A100, A100_MIB) for name, gpus in NODES)
    queues = tuple(view_of(spec) for spec in QUEUES)
    state = SimState(SimCluster(ClusterSpec(groups)), queues, CostModel(), half_life_s=HALF_LIFE_S)
    events = sorted(
        [(job.submit_s, 0, i) for i, job in enumerate(JOBS, start=1)]
        + [(10.0, 1, i) for i, job in enumerate(JOBS, start=1) if job.placed_on]
    )
    for time_s, kind, job_id in events:
        job = JOBS[job_id - 1]
        if kind == 0:
            trace = TraceJob(
                job_id,
                job.queue,
                _t(time_s),
                100_000.0,
                job.gpus * job.nodes,
                job.nodes,
                priority=job.priority,
            )
            state.arrive(trace, ResourceRequest(job.gpus, job.nodes), _t(time_s))
        else:
            gpus = tuple(GpuRef(str(job.placed_on), i) for i in range(job.gpus))
            state.start(Placement(job_id, (str(job.placed_on),), gpus), _t(time_s))
    return state


def _t(seconds: float) -> float:
    return at(seconds).timestamp()


def _normalized(snapshot: Snapshot) -> Snapshot:
    """The same snapshot with pending and running in id order (the store's order is free)."""
    return Snapshot(
        now=snapshot.now,
        nodes=snapshot.nodes,
        pending=tuple(sorted(snapshot.pending, key=lambda p: p.job_id)),
        running=tuple(sorted(snapshot.running, key=lambda r: r.attempt_id)),
        queues=snapshot.queues,
    )


def test_the_simulator_builds_the_servers_snapshot(db: Database) -> None:
    _server(db)
    server = _normalized(_server_snapshot(db))
    sim = _normalized(_sim().snapshot(_t(NOW_S)))
    assert sim.nodes == server.nodes
    assert sim.pending == server.pending
    assert sim.running == server.running
    # decayed usage: the server adds a pass's GPU-s undecayed, the simulator passes at
    # every event (here also at 20..50 s), so they agree to the decay within a window
    server_usage = [q.usage_gpu_s for q in server.queues]
    assert server_usage == [8 * 990.0, 0.0]
    assert [q.usage_gpu_s for q in sim.queues] == pytest.approx(server_usage, rel=1e-4)
    assert [replace(q, usage_gpu_s=0.0) for q in sim.queues] == [
        replace(q, usage_gpu_s=0.0) for q in server.queues
    ]
    assert sim.now == server.now


COMPOSITIONS = list(itertools.product(ORDERINGS, PLACEMENTS, PREEMPTIONS, BACKFILLS, ADMISSIONS))


def test_every_policy_decides_the_same_on_both(db: Database) -> None:
    _server(db)
    server_snapshot, sim_snapshot = _server_snapshot(db), _sim().snapshot(_t(NOW_S))
    differ = []
    for ordering, placement_name, preempt, backfill, admit in COMPOSITIONS:
        policy = make_policy(
            ordering=ordering,
            placement=placement_name,
            preemption=preempt,
            backfill=backfill,
            admission=admit,
        )
        if policy.decide(sim_snapshot) != policy.decide(server_snapshot):
            differ.append(policy.name)
    assert not differ, f"the simulator decides differently under {differ}"


@pytest.mark.parametrize(("ordering", "preempt"), list(itertools.product(ORDERINGS, PREEMPTIONS)))
def test_a_server_cycle_leaves_the_state_the_simulator_reaches(
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ordering: str,
    preempt: str,
) -> None:
    _server(db)
    monkeypatch.setattr("scheduler.cycle.utcnow", lambda: at(NOW_S))
    settings = ServerSettings(
        data_dir=tmp_path, database_url=db.url, ordering=ordering, preemption=preempt
    )
    rt = Runtime(db, settings)
    run_cycle(rt)

    state = _sim()
    decisions = rt.policy.decide(state.snapshot(_t(NOW_S)))
    _apply(state, decisions, _t(NOW_S))
    after_server = _normalized(_server_snapshot(db))
    after_sim = _normalized(state.snapshot(_t(NOW_S)))
    assert after_sim.nodes == after_server.nodes
    assert after_sim.pending == after_server.pending
    assert after_sim.running == after_server.running
    assert decisions.placements, "the scenario should place something"


def _apply(state: SimState, decisions: Decisions, now: float) -> None:
    """What the simulator's engine does with a cycle's decisions."""
    for p in decisions.placements:
        state.start(p, now)
    for preemption in decisions.preemptions:
        state.mark_stopping(preemption.attempt_id)
