"""A PostgreSQL outage: the API answers 503 with a clear message, then recovers by itself.

A private PostgreSQL cluster (its own, since the test stops it) backs a real server and
agent. While a job runs, PostgreSQL is stopped with ``pg_ctl``: the API answers 503
``unavailable``; the agent keeps its attempt. Once PostgreSQL is back the API answers
200 without a restart of the server, the leader takes its lock again, the running job
and the one queued behind it before the outage both succeed, and nothing acknowledged
is lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scheduler.domain.spec import JobSpec, Resources
from scheduler.localcluster import LocalCluster
from tests.conftest import _Cluster, _in_ci, _pg_bin
from tests.e2e.test_spine import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.slow]


class Postgres(_Cluster):
    """The test suite's throwaway cluster, which this test stops and starts again."""

    def pause(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.dir / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")


@pytest.fixture
def postgres() -> Iterator[tuple[Postgres, str]]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        if _in_ci():
            pytest.fail("CI=true but no PostgreSQL binaries")
        pytest.skip("no PostgreSQL binaries to start a private cluster")
    cluster = Postgres(bin_dir)
    try:
        url = cluster.start()
        yield cluster, url
    finally:
        cluster.stop()


def _get(cluster: LocalCluster, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    return httpx.get(f"{cluster.url}{path}", headers=headers, timeout=10.0)


def test_the_api_answers_503_during_an_outage_and_recovers(
    postgres: tuple[Postgres, str], tmp_path: Path
) -> None:
    pg, url = postgres
    args = ("--database-url", url, "--node-timeout-s", "30", "--cycle-interval-s", "1")
    with LocalCluster(tmp_path, server_args=args) as cluster:
        cluster.start_server()
        cluster.start_agent("node-a", "sim:1")
        cluster.wait_for_nodes(["node-a"])
        with cluster.client() as client:
            running = client.submit(JobSpec(command="sleep 4", resources=Resources(gpus=1)))
            queued = client.submit(JobSpec(command="true", resources=Resources(gpus=1)))
            wait_until(lambda: client.get_job(running.id).status == "running", 30, "running")

        pg.pause()
        down = _get(cluster, "/api/v1/jobs")
        assert down.status_code == 503
        error = down.json()["error"]
        assert error["code"] == "unavailable"
        assert error["message"].startswith("the database is unavailable")
        time.sleep(2.0)  # the loops and the agent's syncs fail meanwhile
        pg.resume()

        wait_until(lambda: _get(cluster, "/api/v1/jobs").status_code == 200, 30, "the API")
        with cluster.client() as client:
            wait_until(lambda: client.health().role == "leader", 30, "leadership again")
            assert client.wait(running.id, timeout_s=60).status == "succeeded"
            assert client.wait(queued.id, timeout_s=60).status == "succeeded"
            assert client.get_job(running.id).attempts_count == 1
