"""``corral server --workers N``: N API processes on one port and one loops process.

Jobs run through them (the API workers wake the loops worker's cycle, and it their
agents, through PostgreSQL); a worker that dies is replaced, the loops worker's
replacement leads again; the workers die with the server however it ends; any API
worker's /metrics counts the whole server's syncs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest

from scheduler.domain.spec import JobSpec, Resources
from scheduler.localcluster import LocalCluster, corral_argv
from scheduler.store.db import Database
from tests.e2e.test_crash_safety import gpu_overlaps, terminal_transitions
from tests.e2e.test_ha import pg_url  # noqa: F401 - the fixture
from tests.e2e.test_spine import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]


def _cluster(data_dir: Path, url: str, workers: int = 2) -> LocalCluster:
    args = ("--database-url", url, "--workers", str(workers), "--node-timeout-s", "10")
    return LocalCluster(data_dir, server_args=args)


def _workers(cluster: LocalCluster) -> list[int]:
    assert cluster.server is not None
    return sorted(p.pid for p in psutil.Process(cluster.server.popen.pid).children())


def _run_jobs(cluster: LocalCluster, count: int) -> list[int]:
    spec = JobSpec(command="sleep 0.2", resources=Resources(gpus=1))
    with cluster.client() as client:
        ids = [client.submit(spec).id for _ in range(count)]

    def done() -> bool:
        with cluster.client() as client:
            return all(client.get_job(job_id).status == "succeeded" for job_id in ids)

    wait_until(done, 90, f"{count} jobs to succeed")
    return ids


def _roles(cluster: LocalCluster, tries: int = 40) -> set[str]:
    """The roles the server's workers answer with, over fresh connections."""
    seen = set()
    for _ in range(tries):
        with cluster.client(timeout_s=5.0) as client:
            seen.add(client.health().role)
    return seen


def _sync_count(cluster: LocalCluster) -> float:
    """The server's sync count from /metrics, over a fresh connection."""
    auth = {"Authorization": f"Bearer {cluster.token}"}
    text = httpx.get(f"{cluster.url}/metrics", headers=auth, timeout=30).text
    name = "corral_agent_sync_duration_seconds_count"
    return float(next(x for x in text.splitlines() if x.startswith(name)).split()[-1])


def test_jobs_run_through_workers_and_a_dead_worker_is_replaced(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    with _cluster(tmp_path, pg_url) as cluster:
        cluster.start_server()
        wait_until(lambda: len(_workers(cluster)) == 3, 30, "two API workers and the loops")
        wait_until(lambda: _roles(cluster, 5) == {"leader"}, 30, "the loops worker to lead")
        cluster.start_agent("node-a", "sim:2")
        cluster.start_agent("node-b", "sim:2")
        cluster.wait_for_nodes(["node-a", "node-b"])
        first = _run_jobs(cluster, 6)

        counts = [_sync_count(cluster) for _ in range(6)]  # each over a fresh connection
        assert counts == sorted(counts) and counts[0] > 0  # one count, whoever answers

        for killed in (_workers(cluster)[-1], _workers(cluster)[0]):  # the loops', an API's
            os.kill(killed, signal.SIGKILL)
            wait_until(
                lambda: len(_workers(cluster)) == 3 and killed not in _workers(cluster),  # noqa: B023
                30,
                "a new worker in place of the killed one",
            )
        wait_until(lambda: _roles(cluster, 5) == {"leader"}, 30, "the new loops worker to lead")
        second = _run_jobs(cluster, 6)
    db = Database(pg_url)
    try:
        assert not gpu_overlaps(db)
        transitions = terminal_transitions(db)
        assert all(transitions[job_id] == 1 for job_id in first + second)
    finally:
        db.dispose()


def test_the_workers_end_with_the_server_however_it_ends(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
) -> None:
    with _cluster(tmp_path / "kill", pg_url) as cluster:
        cluster.start_server()
        wait_until(lambda: len(_workers(cluster)) == 3, 30, "the workers")
        workers = _workers(cluster)
        port = int(cluster.url.rsplit(":", 1)[1])
        cluster.restart_server(crash=True)  # SIGKILL, then a new server on the same port
        assert all(not psutil.pid_exists(pid) or _zombie(pid) for pid in workers)
        assert int(cluster.url.rsplit(":", 1)[1]) == port

        assert cluster.server is not None
        workers = _workers(cluster)
        cluster.server.popen.send_signal(signal.SIGTERM)
        assert cluster.server.popen.wait(timeout=30) == 0
        wait_until(lambda: not any(map(_alive, workers)), 10, "the workers to stop")


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _alive(pid: int) -> bool:
    return psutil.pid_exists(pid) and not _zombie(pid)


def test_workers_on_sqlite_are_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        corral_argv("server", "--data-dir", str(tmp_path), "--port", "0", "--workers", "2"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "error: --workers needs PostgreSQL (--database-url): SQLite supports one server process"
    ]
