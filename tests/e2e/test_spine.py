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


def _job_count(cli: Cli) -> int:
    out = cli.run("jobs", "--all", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    return len(listed["jobs"] if isinstance(listed, dict) else listed)


BAD_SUBMITS = [
    pytest.param(["-g", "-1", "--", "true"], "gpus", id="negative-gpus"),
    pytest.param(["-q", "no-such-queue", "--", "true"], "queue", id="unknown-queue"),
    pytest.param(["-g", "64", "--", "true"], "node", id="never-fits"),
    pytest.param(["--gpu-type", "Z999", "--", "true"], "node", id="no-such-gpu-type"),
    pytest.param(["--time-limit", "soon", "--", "true"], "duration", id="bad-duration"),
    pytest.param(["-e", "CUDA_VISIBLE_DEVICES=0", "--", "true"], "CUDA_VISIBLE_DEVICES", id="env"),
    pytest.param(["-f", "{yaml}"], "yaml", id="malformed-yaml"),
    pytest.param(["-f", "{unknown}"], "bogus", id="unknown-field"),
]


@pytest.mark.parametrize(("args", "mentions"), BAD_SUBMITS)
def test_bad_submit_is_one_line_and_changes_nothing(
    cli: Cli, tmp_path: Path, args: list[str], mentions: str
) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("command: [unclosed\nresources: {gpus: 1\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("command: ['true']\nbogus: 1\n")
    args = [a.replace("{yaml}", str(bad_yaml)).replace("{unknown}", str(unknown)) for a in args]
    before = _job_count(cli)
    out = cli.run("submit", *args)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
    assert mentions.lower() in lines[0].lower()
    assert _job_count(cli) == before


def test_bad_token_is_refused(cli: Cli) -> None:
    env = {**cli.env, "CORRAL_TOKEN": "crl_not-a-real-token"}
    out = Cli(env).run("jobs")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "token" in out.stderr
