"""High availability: several servers on one PostgreSQL, one leader; SQLite stays single.

Two servers share a private PostgreSQL database; the agents sync with the follower, so
their placements (committed by the leader) reach them through LISTEN/NOTIFY. The
leader is SIGKILLed mid-run: the follower takes over within seconds, the remaining
jobs run, and the history shows no GPU in two live allocations and no job running
two attempts at once.
"""

from __future__ import annotations

import os
import queue
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.client import CorralError
from scheduler.domain.spec import JobSpec, Resources
from scheduler.localcluster import LocalCluster, corral_argv
from scheduler.store.db import Database, upgrade
from scheduler.store.leadership import LeaderLock, NotLeader, WakeChannel, fence
from tests.checks import assert_no_attempt_overlap
from tests.conftest import PostgresServer, _fresh_postgres_database, _in_ci
from tests.e2e.test_crash_safety import gpu_overlaps, terminal_transitions
from tests.e2e.test_spine import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TAKEOVER_LIMIT_S = 15.0  # generous for a loaded CI machine; it takes about 1-2 s


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    if postgres_server.url is None:
        if _in_ci():
            pytest.fail(f"CI=true but PostgreSQL is unavailable: {postgres_server.why_not}")
        pytest.skip(f"PostgreSQL unavailable: {postgres_server.why_not}")
    url, drop = _fresh_postgres_database(postgres_server.url)
    try:
        yield url
    finally:
        drop()


def _server(data_dir: Path, url: str) -> LocalCluster:
    args = ("--database-url", url, "--node-timeout-s", "10", "--retry-backoff-s", "0.2")
    return LocalCluster(data_dir, server_args=args)


def _role(cluster: LocalCluster) -> str | None:
    try:
        with cluster.client(timeout_s=2.0) as client:
            return client.health().role
    except CorralError:
        return None


def _submit(cluster: LocalCluster, count: int) -> list[int]:
    spec = JobSpec(command="sleep 0.3", resources=Resources(gpus=1))
    with cluster.client() as client:
        return [client.submit(spec).id for _ in range(count)]


def _all_succeeded(cluster: LocalCluster, ids: list[int]) -> bool:
    with cluster.client() as client:
        return all(client.get_job(job_id).status == "succeeded" for job_id in ids)


@pytest.mark.postgres
def test_the_follower_takes_over_when_the_leader_dies(tmp_path: Path, pg_url: str) -> None:
    first, second = _server(tmp_path / "a", pg_url), _server(tmp_path / "b", pg_url)
    with first, second:
        first.start_server()
        wait_until(lambda: _role(first) == "leader", 30, "the first server to lead")
        second.start_server()
        assert _role(second) == "follower"
        second.token = first.token  # one database: the admin token works on both
        second.start_agent("node-a", "sim:2")
        second.start_agent("node-b", "sim:2")
        second.wait_for_nodes(["node-a", "node-b"])

        before = _submit(first, 8)  # placed by the leader, started through the follower
        wait_until(lambda: _all_succeeded(second, before), 60, "jobs run via the follower")

        during = _submit(second, 12)
        first.server.kill()  # type: ignore[union-attr]
        killed_at = time.monotonic()
        wait_until(lambda: _role(second) == "leader", TAKEOVER_LIMIT_S, "the takeover")
        takeover_s = time.monotonic() - killed_at
        after = _submit(second, 4)
        wait_until(lambda: _all_succeeded(second, during + after), 90, "jobs after the takeover")
        print(f"takeover after {takeover_s:.2f}s")
    db = Database(pg_url)
    try:
        assert not gpu_overlaps(db)
        assert_no_attempt_overlap(db)
        transitions = terminal_transitions(db)
        assert all(transitions[j] == 1 for j in before + during + after)
    finally:
        db.dispose()


def test_a_second_server_on_one_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    with LocalCluster(tmp_path) as cluster:
        cluster.start_server()
        done = subprocess.run(
            corral_argv("server", "--data-dir", str(tmp_path / "server"), "--port", "0"),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: another corral server")
        assert "SQLite supports one server" in lines[0]
        with cluster.client() as client:  # the first one is unharmed
            assert client.health().role == "leader"


@pytest.mark.postgres
def test_a_deposed_leader_is_fenced_and_wakeups_cross_servers(pg_url: str) -> None:
    db = Database(pg_url)
    upgrade(db)
    first, second = LeaderLock(pg_url, "first"), LeaderLock(pg_url, "second")
    delivered: queue.Queue[tuple[list[str] | None, bool]] = queue.Queue()
    sender = WakeChannel(pg_url, "first", lambda names, schedule: None)
    listener = WakeChannel(pg_url, "second", lambda names, s: delivered.put((names, s)))
    try:
        assert first.try_acquire() == 1
        assert second.try_acquire() is None  # one leader at a time
        assert first.still_held()
        first.release()  # as a crash would: the session ends, the lock goes with it
        assert second.try_acquire() == 2
        with pytest.raises(NotLeader), db.write() as session:
            fence(session, 1)  # the deposed leader's write cannot commit
        with db.write() as session:
            fence(session, 2)

        listener.start()
        assert delivered.get(timeout=10) == (None, True)  # on (re)connect: wake everything
        sender.start()
        sender.publish(["node-a"], False)
        assert delivered.get(timeout=10) == (["node-a"], False)
    finally:
        sender.stop()
        listener.stop()
        second.release()
        db.dispose()
