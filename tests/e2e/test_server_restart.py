"""End to end: agents ride out a server restart, and a crashed server loses nothing.

The agent keeps its attempts while the server is away and re-syncs when it is back;
every job acknowledged before a SIGKILL of the server is still there afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scheduler.domain.spec import JobSpec, Resources
from scheduler.localcluster import LocalCluster
from tests.e2e.test_spine import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path, server_args=("--node-timeout-s", "30"))
    with local:
        local.start_server()
        local.start_agent("node-a", "sim:2")
        local.wait_for_nodes(["node-a"])
        yield local


def sleeper(seconds: float, marker: Path) -> JobSpec:
    script = f"sleep {seconds}; echo finished > {marker}"
    return JobSpec(command=script, resources=Resources(gpus=1))


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
def test_running_job_survives_a_server_restart(
    cluster: LocalCluster, tmp_path: Path, crash: bool
) -> None:
    marker = tmp_path / "finished"
    with cluster.client() as client:
        job = client.submit(sleeper(3, marker))
        wait_until(lambda: client.get_job(job.id).status == "running", 30, "running")
    cluster.restart_server(crash=crash, down_s=1.0)
    with cluster.client() as client:
        done = client.wait(job.id, timeout_s=60)
        assert done.status == "succeeded"
        assert done.attempts_count == 1  # the same attempt ran through the outage
    assert marker.read_text().strip() == "finished"


def test_acknowledged_jobs_survive_a_crash(cluster: LocalCluster) -> None:
    with cluster.client() as client:
        ids = [
            client.submit(JobSpec(command="true", resources=Resources(gpus=0))).id
            for _ in range(20)
        ]
    cluster.restart_server(crash=True)
    with cluster.client() as client:
        for job_id in ids:
            assert client.wait(job_id, timeout_s=60).status == "succeeded"
