"""End to end: ``corral submit --array`` makes the whole array in one call, each job's
process sees its own ``CORRAL_ARRAY_INDEX``, ``corral jobs --array`` lists the array
and ``corral cancel --array`` ends what is left of it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from scheduler.localcluster import LocalCluster
from tests.e2e.conftest import Cli, cli_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def cli(shared_cluster: LocalCluster, tmp_path: Path) -> Cli:
    return cli_for(shared_cluster, tmp_path)


def run_json(cli: Cli, *args: str) -> Any:
    out = cli.run(args[0], "--json", *args[1:])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def array_jobs(cli: Cli, array_id: int) -> list[dict[str, Any]]:
    return list(run_json(cli, "jobs", "--array", str(array_id), "--all")["jobs"])


def wait_all_ended(cli: Cli, array_id: int, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = array_jobs(cli, array_id)
        if all(job["status"] in ("succeeded", "failed", "cancelled") for job in jobs):
            return jobs
        assert time.monotonic() < deadline, f"array {array_id} still runs: {jobs}"
        time.sleep(0.2)


def test_each_job_of_an_array_runs_with_its_own_index(cli: Cli) -> None:
    command = 'echo "index=$CORRAL_ARRAY_INDEX array=$CORRAL_ARRAY_ID"'
    result = run_json(cli, "submit", "--array", "0-6:2", "-g", "1", "--", command)
    array_id, ids = result["array_id"], result["job_ids"]
    jobs = wait_all_ended(cli, array_id)
    assert sorted(job["id"] for job in jobs) == sorted(ids)
    assert {job["status"] for job in jobs} == {"succeeded"}
    for job in jobs:
        out = cli.run("logs", str(job["id"]))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"index={job['array_index']} array={array_id}"
    assert sorted(job["array_index"] for job in jobs) == [0, 2, 4, 6]


def test_cancel_array_ends_every_job_left(cli: Cli) -> None:
    result = run_json(cli, "submit", "--array", "0-9", "-g", "2", "--", "sleep 300")
    array_id = result["array_id"]
    out = cli.run("cancel", "--array", str(array_id))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"cancelled array {array_id}: ")
    jobs = wait_all_ended(cli, array_id)
    assert {job["status"] for job in jobs} == {"cancelled"}


def test_a_bad_array_is_one_error_line(cli: Cli) -> None:
    out = cli.run("submit", "--array", "5-1", "--", "true")
    assert out.returncode != 0
    assert out.stderr.startswith("error: indices: ")
    assert len(out.stderr.strip().splitlines()) == 1
