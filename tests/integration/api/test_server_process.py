"""Against a real ``corral server`` process (uvicorn, its own loops), on each backend:
the long poll releases a held sync when the server's own cycle places a job, and under
concurrent submits and agent syncs no GPU is ever given to two attempts at once.

The agents here are fakes in threads of the test (no agent processes): each syncs over
HTTP as ``agents/link.py`` would, and checks every placement it is sent.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from scheduler.domain.sync import AttemptReport, NodeFacts, SyncReply
from scheduler.localcluster import LocalCluster
from scheduler.store.db import Database
from scheduler.store.models import AllocationRow, AttemptRow, JobRow
from tests.factories import exited, node_facts, report
from tests.integration.api.harness import JOBS, NODES, SYNC, spec_body, sync_body

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HELD_S = 10.0
AGENT_WAIT_S = 0.2  # the fake agents' long poll: short, so they also exit attempts soon
JOB_COUNT = 200
SUBMITTERS = 4
DEADLINE_S = 240.0


@pytest.fixture
def server(upgraded_database_url: str, tmp_path: Path) -> Iterator[LocalCluster]:
    args = (
        "--database-url",
        upgraded_database_url,
        "--cycle-interval-s",
        "0.5",
        "--log-level",
        "warning",
    )
    with LocalCluster(tmp_path, server_args=args) as cluster:
        cluster.start_server()
        yield cluster


def http_client(cluster: LocalCluster) -> httpx.Client:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    return httpx.Client(base_url=cluster.url, headers=headers, timeout=60.0)


def sync(
    http: httpx.Client, facts: NodeFacts, *reports: AttemptReport, wait_s: float = 0.0
) -> SyncReply:
    response = http.post(SYNC, json=sync_body(facts, *reports, wait_s=wait_s))
    assert response.status_code == 200, response.text
    return SyncReply.model_validate(response.json())


def submit(http: httpx.Client, **fields: Any) -> int:
    response = http.post(JOBS, json=spec_body(**fields))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def poll_until(check: Any, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


# -- the long poll -----------------------------------------------------------------


def test_an_idle_sync_is_held_then_answered_empty(server: LocalCluster) -> None:
    facts = node_facts("n1", 2)
    with http_client(server) as http:
        sync(http, facts)
        started = time.monotonic()
        reply = sync(http, facts, wait_s=0.5)
        assert time.monotonic() - started >= 0.5
    assert (reply.run, reply.stop) == ([], [])


def test_a_held_sync_returns_with_the_attempt_the_servers_cycle_placed(
    server: LocalCluster,
) -> None:
    facts = node_facts("n1", 2)
    with http_client(server) as http, ThreadPoolExecutor(max_workers=1) as pool:
        sync(http, facts)
        seen = http.get(f"{NODES}/n1").json()["last_seen_at"]

        def held() -> tuple[SyncReply, float]:
            with http_client(server) as own:
                started = time.monotonic()
                return sync(own, facts, wait_s=HELD_S), time.monotonic() - started

        future = pool.submit(held)

        def synced() -> bool:  # its write is visible once it holds the reply
            assert not future.done(), f"the sync was not held: {future.result()}"
            return bool(http.get(f"{NODES}/n1").json()["last_seen_at"] != seen)

        poll_until(synced, "the held sync reached the server", timeout_s=30)
        job_id = submit(http)
        reply, elapsed = future.result(timeout=HELD_S + 30)
    assert [launch.job_id for launch in reply.run] == [job_id]
    assert reply.run[0].env["CORRAL_JOB_ID"] == str(job_id)
    assert elapsed < HELD_S  # released by the placement, not by the timeout


# -- no GPU double-booked --------------------------------------------------------


@dataclass
class FakeAgent:
    """Syncs in a loop; reports what it was sent running, then exited 0 in random order.
    As a real agent, it reports an ended attempt until a reply no longer lists it (a
    reply may come before the server wrote the end).

    ``violations`` gets every placement that reuses a GPU of an attempt this agent has
    not yet reported exited, and every attempt sent again after a reply unlisted it.
    """

    cluster: LocalCluster
    facts: NodeFacts
    seed: int
    stopping: threading.Event
    violations: list[str] = field(default_factory=list)
    running: dict[int, list[int]] = field(default_factory=dict)  # attempt -> GPU indices
    reported: set[int] = field(default_factory=set)  # reported running at least once
    ending: set[int] = field(default_factory=set)  # reported exited, still listed
    ended: set[int] = field(default_factory=set)
    error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(self.seed)
        try:
            with http_client(self.cluster) as http:
                while not self.stopping.is_set():
                    self._sync_once(http, rng)
        except BaseException as exc:
            self.error = exc

    def _sync_once(self, http: httpx.Client, rng: random.Random) -> None:
        ending = [a for a in sorted(self.running) if a in self.reported and rng.random() < 0.4]
        for attempt in ending:
            del self.running[attempt]
            self.ending.add(attempt)
        reports = [exited(a, 0) for a in sorted(self.ending)]
        reports += [report(a) for a in self.running]
        reply = sync(http, self.facts, *reports, wait_s=AGENT_WAIT_S)
        listed = {launch.attempt_id for launch in reply.run}
        for attempt in self.ending - listed:
            self.ending.discard(attempt)
            self.ended.add(attempt)
        self.reported |= set(self.running)
        busy = {i for indices in self.running.values() for i in indices}
        for launch in reply.run:
            if launch.attempt_id in self.running or launch.attempt_id in self.ending:
                continue
            if launch.attempt_id in self.ended:
                self.violations.append(f"{self.facts.name}: attempt {launch.attempt_id} again")
                continue
            if busy & set(launch.gpu_indices) or len(launch.gpu_indices) != 1:
                self.violations.append(
                    f"{self.facts.name}: attempt {launch.attempt_id} got GPUs "
                    f"{launch.gpu_indices} while {sorted(busy)} are busy"
                )
            self.running[launch.attempt_id] = launch.gpu_indices
            busy |= set(launch.gpu_indices)
        if reply.stop:
            self.violations.append(f"{self.facts.name}: unexpected stops {reply.stop}")


def submit_many(cluster: LocalCluster) -> list[int]:
    def one_submitter(n: int) -> list[int]:
        with http_client(cluster) as http:
            return [submit(http, name=f"s{n}-{i}") for i in range(JOB_COUNT // SUBMITTERS)]

    with ThreadPoolExecutor(max_workers=SUBMITTERS) as pool:
        return [job_id for ids in pool.map(one_submitter, range(SUBMITTERS)) for job_id in ids]


def wait_until_all_succeeded(cluster: LocalCluster, agents: list[FakeAgent]) -> None:
    with http_client(cluster) as http:

        def done() -> bool:
            for agent in agents:
                assert agent.error is None, f"{agent.facts.name}: {agent.error!r}"
                assert not agent.violations, agent.violations
            ended_badly: dict[str, Any] = {"status": "failed,cancelled", "limit": 10}
            assert http.get(JOBS, params=ended_badly).json()["jobs"] == []
            page = http.get(JOBS, params={"status": "succeeded", "limit": 1000}).json()
            return len(page["jobs"]) == JOB_COUNT

        poll_until(done, f"all {JOB_COUNT} jobs succeeded", timeout_s=DEADLINE_S)


def overlaps(allocations: list[Any]) -> list[str]:
    """Pairs of allocations of one GPU whose [created_at, released_at) intersect."""
    found = []
    by_gpu: dict[tuple[int, int], list[Any]] = {}
    for a in allocations:
        by_gpu.setdefault((a.node_id, a.gpu_index), []).append(a)
    for gpu, held in by_gpu.items():
        held.sort(key=lambda a: (a.created_at, a.id))
        for before, after in itertools.pairwise(held):
            if after.created_at < before.released_at:
                found.append(f"GPU {gpu}: allocation {before.id} and {after.id} overlap")
    return found


def test_no_gpu_is_double_booked_under_concurrent_submits_and_syncs(
    server: LocalCluster, upgraded_database_url: str
) -> None:
    nodes = [node_facts(f"n{i}", 4) for i in range(3)]
    with http_client(server) as http:
        for facts in nodes:
            sync(http, facts)
    stopping = threading.Event()
    agents = [FakeAgent(server, facts, seed=i, stopping=stopping) for i, facts in enumerate(nodes)]
    threads = [threading.Thread(target=a.run, name=a.facts.name) for a in agents]
    for thread in threads:
        thread.start()
    try:
        ids = submit_many(server)
        assert len(set(ids)) == JOB_COUNT
        wait_until_all_succeeded(server, agents)
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=60)
        server.stop()
    # reported ended; the last ones may not have been unlisted by a reply yet
    assert sum(len(a.ended | a.ending) for a in agents) == JOB_COUNT

    db = Database(upgraded_database_url)
    try:
        with db.read() as session:
            jobs = session.execute(select(JobRow.id, JobRow.status, JobRow.attempts_count)).all()
            attempts = session.execute(select(AttemptRow.status, AttemptRow.reason)).all()
            allocations = list(session.scalars(select(AllocationRow)))
    finally:
        db.dispose()
    assert sorted(j.id for j in jobs) == sorted(ids)
    assert {(j.status.value, j.attempts_count) for j in jobs} == {("succeeded", 1)}
    assert {(a.status.value, a.reason.value) for a in attempts} == {("ended", "succeeded")}
    assert len(allocations) == JOB_COUNT
    assert [a.id for a in allocations if a.released_at is None] == []
    assert overlaps(allocations) == []
