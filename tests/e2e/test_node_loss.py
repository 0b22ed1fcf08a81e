"""End to end: a job whose agent dies (SIGKILL) is requeued and runs elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.localcluster import LocalCluster
from scheduler.store.db import sqlite_url
from tests.checks import assert_no_attempt_overlap
from tests.e2e.conftest import cli_for
from tests.e2e.test_spine import kill_group, show, submit, wait_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_job_is_requeued_when_its_agent_dies(cluster: LocalCluster, tmp_path: Path) -> None:
    cli = cli_for(cluster, tmp_path)
    marker = tmp_path / "attempts"
    marker.mkdir()
    script = f"echo $$ > {marker}/$CORRAL_ATTEMPT.pid; exec sleep 300"
    job_id = submit(cli, "-g", "2", "--", "sh", "-c", script)
    first = wait_status(cli, job_id, {"running"})
    node = first["attempts"][0]["nodes"][0]
    orphan = int(wait_until(lambda: (marker / "1.pid").exists() and (marker / "1.pid").read_text()))
    try:
        cluster.agents[node].kill()  # the machine "dies": no agent to stop the process
        second = wait_until(
            lambda: (
                (job := show(cli, job_id))["attempts_count"] == 2
                and job["status"] == "running"
                and job
            ),
            60,
            "the job to run again elsewhere",
        )
        assert second["attempts"][0]["reason"] == "node_lost"
        assert second["attempts"][1]["nodes"] != [node]
        assert second["submitted_at"] == first["submitted_at"]  # it kept its place
        assert second["retries_used"] == 0  # a lost node is not the job's failure
        nodes = json.loads(cli.run("nodes", "--json").stdout)
        states = {
            n["name"]: n["state"] for n in (nodes["nodes"] if isinstance(nodes, dict) else nodes)
        }
        assert states[node] == "lost"
    finally:
        kill_group(orphan)
    assert cli.run("cancel", str(job_id)).returncode == 0
    wait_status(cli, job_id, {"cancelled"})
    assert_no_attempt_overlap(sqlite_url(cluster.data_dir / "server"))  # as the server saw it
