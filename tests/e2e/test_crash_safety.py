"""Crash safety: jobs keep coming while the server and the agents are SIGKILLed at random.

A submitter thread submits short jobs (``true``, ``sleep 0.1``) as fast as the server
takes them; meanwhile the server is killed and restarted at random moments and so are
the agents. At the end, from the database history:

- every acknowledged job (the client got its reply) exists and reached a terminal
  state, and each job made exactly one transition into a terminal state;
- no GPU was ever in two live allocations (per node and GPU index the allocation
  intervals never overlap) and no job ran two attempts at once;
- the counts add up: every job in the database is terminal and succeeded.

CI runs a small version on SQLite and on PostgreSQL; the full one (2,000 jobs, 10
server kills) is

    CRASH_JOBS=2000 CRASH_KILLS=10 .venv/bin/pytest tests/e2e/test_crash_safety.py -s
    .venv/bin/python benchmarks/crash.py --jobs 2000 --kills 10 [--database-url URL]
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from scheduler.client import CorralClient, CorralError
from scheduler.domain.spec import JobSpec, Resources
from scheduler.domain.status import TERMINAL
from scheduler.localcluster import LocalCluster
from scheduler.store.db import Database
from scheduler.store.models import AllocationRow, JobEventRow, JobRow
from tests.checks import assert_no_attempt_overlap

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NODES = {"node-a": "sim:4", "node-b": "sim:4"}
COMMANDS = ("true", "sleep 0.1")


# -- checks on the database history ---------------------------------------------------


def gpu_overlaps(db: Database) -> list[str]:
    """One sentence per pair of allocations of one GPU whose intervals overlap."""
    spans: dict[tuple[int, int], list[tuple[datetime, datetime | None, int]]] = defaultdict(list)
    with db.read() as session:
        for row in session.scalars(select(AllocationRow)):
            spans[(row.node_id, row.gpu_index)].append(
                (row.created_at, row.released_at, row.attempt_id)
            )
    found = []
    for (node_id, index), intervals in sorted(spans.items()):
        intervals.sort(key=lambda s: s[0])
        for (start, end, attempt), (later, _, other) in itertools.pairwise(intervals):
            if end is None or later < end:
                found.append(
                    f"node {node_id} gpu {index}: attempt {attempt} [{start}, {end}) "
                    f"overlaps attempt {other} from {later}"
                )
    return found


def terminal_transitions(db: Database) -> Counter[int]:
    """job id -> how many status events moved it into a terminal state."""
    terminal = {s.value for s in TERMINAL}
    counts: Counter[int] = Counter()
    with db.read() as session:
        rows = session.execute(
            select(JobEventRow.job_id, JobEventRow.new_status).where(JobEventRow.kind == "status")
        )
        for job_id, new_status in rows:
            if new_status is not None and str(new_status) in terminal:
                counts[job_id] += 1
    return counts


def job_statuses(db: Database) -> dict[int, str]:
    with db.read() as session:
        return {job_id: str(status) for job_id, status in session.execute(
            select(JobRow.id, JobRow.status)
        )}  # fmt: skip


# -- the run ---------------------------------------------------------------------------


@dataclass
class Tally:
    acknowledged: list[int] = field(default_factory=list)
    refused: int = 0  # no reply, or an error: not acknowledged (it may still exist)


def submit_until(cluster: LocalCluster, jobs: int, tally: Tally, done: threading.Event) -> None:
    """Submit ``jobs`` acknowledged jobs, retrying through server outages."""
    rng = random.Random(7)
    while len(tally.acknowledged) < jobs and not done.is_set():
        spec = JobSpec(
            command=rng.choice(COMMANDS), resources=Resources(gpus=rng.choice((0, 1, 1, 2)))
        )
        try:
            with CorralClient(cluster.url, cluster.token, 5.0) as client:
                while len(tally.acknowledged) < jobs and not done.is_set():
                    tally.acknowledged.append(client.submit(spec).id)
        except CorralError:
            tally.refused += 1
            time.sleep(0.2)


def chaos(cluster: LocalCluster, kills: int, submitting: threading.Thread, seed: int) -> int:
    """Kill the server ``kills`` times at random moments, and now and then an agent."""
    rng = random.Random(seed)
    done = 0
    while done < kills:
        time.sleep(rng.uniform(0.5, 3.0))
        if rng.random() < 0.4:
            name = rng.choice(sorted(NODES))
            cluster.agents[name].kill()
            cluster.start_agent(name, NODES[name])
        cluster.restart_server(crash=True, down_s=rng.uniform(0.0, 1.0))
        done += 1
        if not submitting.is_alive() and done >= kills:
            break
    return done


def run_crash(
    data_dir: Path, jobs: int, kills: int, seed: int = 1, database_url: str | None = None
) -> dict[str, float]:
    """The whole scenario, on SQLite in the data dir or on ``database_url``; asserts the
    invariants and returns the figures."""
    url = database_url or f"sqlite:///{data_dir / 'server' / 'corral.db'}"
    args = ("--node-timeout-s", "3", "--retry-backoff-s", "0.2", "--database-url", url)
    cluster = LocalCluster(data_dir, server_args=args)
    started = time.monotonic()
    with cluster:
        cluster.start_server()
        for name, gpus in NODES.items():
            cluster.start_agent(name, gpus)
        cluster.wait_for_nodes(sorted(NODES))
        tally, stop = Tally(), threading.Event()
        submitter = threading.Thread(target=submit_until, args=(cluster, jobs, tally, stop))
        submitter.start()
        try:
            server_kills = chaos(cluster, kills, submitter, seed)
            submitter.join(timeout=600)
        finally:
            stop.set()
            submitter.join()
        for name, gpus in NODES.items():  # every agent alive for the end of the run
            if not cluster.agents[name].alive():
                cluster.start_agent(name, gpus)
        _wait_all_terminal(cluster, timeout_s=max(120.0, jobs * 0.5))
    db = Database(url)
    try:
        _assert_history(db, tally)
        statuses = job_statuses(db)
    finally:
        db.dispose()
    return {
        "jobs_acknowledged": len(tally.acknowledged),
        "jobs_in_database": len(statuses),
        "submit_errors": tally.refused,
        "server_kills": server_kills,
        "seconds": round(time.monotonic() - started, 1),
    }


def _wait_all_terminal(cluster: LocalCluster, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    live = ["pending", "starting", "running", "stopping"]
    while time.monotonic() < deadline:
        try:
            with cluster.client() as client:
                if not client.list_jobs(status=live, limit=1).jobs:
                    return
        except CorralError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"jobs still live after {timeout_s:.0f}s")


def _assert_history(db: Database, tally: Tally) -> None:
    statuses = job_statuses(db)
    missing = [j for j in tally.acknowledged if j not in statuses]
    assert not missing, f"acknowledged jobs lost: {missing[:20]}"
    assert len(set(tally.acknowledged)) == len(tally.acknowledged), "an id acknowledged twice"
    counts = Counter(statuses.values())
    assert counts == Counter({"succeeded": len(statuses)}), f"not all succeeded: {counts}"
    transitions = terminal_transitions(db)
    wrong = {j: transitions[j] for j in statuses if transitions[j] != 1}
    assert not wrong, f"jobs without exactly one terminal transition: {wrong}"
    overlaps = gpu_overlaps(db)
    assert not overlaps, "a GPU was in two live allocations:\n" + "\n".join(overlaps[:20])
    assert_no_attempt_overlap(db)


def test_acknowledged_jobs_end_once_through_server_and_agent_kills(
    tmp_path: Path, upgraded_database_url: str
) -> None:
    """On both backends: on PostgreSQL an agent's reports are written after the reply."""
    jobs = int(os.environ.get("CRASH_JOBS", "300"))
    kills = int(os.environ.get("CRASH_KILLS", "5"))
    figures = run_crash(tmp_path, jobs, kills, database_url=upgraded_database_url)
    print(figures)
    assert figures["jobs_acknowledged"] == jobs
    assert figures["server_kills"] >= kills
