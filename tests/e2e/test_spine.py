"""End to end: the CLI submits to a real server; real agents run the jobs.

Covers the spine's promises: the right CUDA_VISIBLE_DEVICES, success, failure with
its exit code, cancel (the process is really stopped), and requeue when the agent
holding a job is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from scheduler.localcluster import LocalCluster
from tests.e2e.conftest import Cli, cli_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def cli(shared_cluster: LocalCluster, tmp_path: Path) -> Cli:
    return cli_for(shared_cluster, tmp_path)


def submit(cli: Cli, *args: str) -> int:
    out = cli.run("submit", "--json", *args)
    assert out.returncode == 0, out.stderr
    return int(json.loads(out.stdout)["id"])


def show(cli: Cli, job_id: int) -> dict:
    out = cli.run("show", str(job_id), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_until(check, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_status(cli: Cli, job_id: int, statuses: set[str], timeout_s: float = 60.0) -> dict:
    return wait_until(
        lambda: (job := show(cli, job_id))["status"] in statuses and job,
        timeout_s,
        f"job {job_id} to reach {statuses}",
    )


def test_job_runs_with_its_gpus_and_succeeds(cli: Cli) -> None:
    job_id = submit(
        cli,
        "-g",
        "2",
        "--",
        "sh",
        "-c",
        'echo "visible=$CUDA_VISIBLE_DEVICES rank=$CORRAL_NODE_RANK"',
    )
    job = wait_status(cli, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded"
    attempt = job["attempts"][0]
    indices = sorted(g["index"] for g in attempt["gpus"])
    assert len(indices) == 2 and len(attempt["nodes"]) == 1
    logs = cli.run("logs", str(job_id))
    assert logs.returncode == 0
    assert f"visible={','.join(map(str, indices))} rank=0" in logs.stdout


def test_wait_exits_with_the_jobs_exit_code(cli: Cli) -> None:
    out = cli.run("submit", "--wait", "-g", "1", "--", "sh", "-c", "echo failing; exit 7")
    assert out.returncode == 7, (out.stdout, out.stderr)
    listed = json.loads(cli.run("jobs", "--json").stdout)
    jobs = listed["jobs"] if isinstance(listed, dict) else listed
    assert jobs[0]["status"] == "failed" and jobs[0]["exit_code"] == 7


def test_cancel_stops_the_running_process(cli: Cli, tmp_path: Path) -> None:
    pid_file = tmp_path / "cancel.pid"
    job_id = submit(cli, "-g", "1", "--", "sh", "-c", f"echo $$ > {pid_file}; exec sleep 300")
    wait_status(cli, job_id, {"running"})
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), what="pid"))
    out = cli.run("cancel", str(job_id))
    assert out.returncode == 0, out.stderr
    job = wait_status(cli, job_id, {"cancelled"})
    assert job["attempts"][-1]["reason"] == "cancelled"
    wait_until(lambda: not alive(pid), 30, "the cancelled process to exit")
    again = cli.run("cancel", str(job_id))
    assert again.returncode != 0
    assert "already ended" in again.stderr and again.stderr.count("\n") == 1


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)
