"""The job commands against the fake API: output, JSON, exit codes, errors."""

from __future__ import annotations

import json
import socket

import pytest

from .conftest import Cli
from .fake_api import FakeLog

ATTEMPT = {
    "id": 7,
    "number": 1,
    "status": "ended",
    "nodes": ["n1"],
    "gpus": [{"node": "n1", "index": 0}, {"node": "n1", "index": 1}],
    "created_at": "2026-11-28T16:00:01Z",
    "started_at": "2026-11-28T16:00:02Z",
    "ended_at": "2026-11-28T16:05:00Z",
    "reason": "failed",
    "exit_code": 3,
}
RUNNING = {
    "status": "running",
    "attempts_count": 1,
    "nodes": ["n1"],
    "gpus": [{"node": "n1", "index": 0}, {"node": "n1", "index": 1}],
}


def test_submit_prints_one_line(corral: Cli) -> None:
    result = corral(
        "submit", "--name", "train", "-g", "2", "--", "python", "train.py", "--lr", "3e-4"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "submitted job 1 (train) to queue default\n"
    body = corral.fake.bodies("POST", "/api/v1/jobs")[0]
    assert body["command"] == ["python", "train.py", "--lr", "3e-4"]
    assert body["resources"] == {"gpus": 2}


def test_submit_without_the_double_dash_keeps_the_commands_options(corral: Cli) -> None:
    result = corral("submit", "-g", "1", "python", "train.py", "--wait")
    assert result.exit_code == 0, result.output
    assert corral.fake.bodies("POST", "/api/v1/jobs")[0]["command"] == [
        "python",
        "train.py",
        "--wait",
    ]


def test_submit_a_shell_string(corral: Cli) -> None:
    result = corral("submit", "--", "echo hi && sleep 1")
    assert result.exit_code == 0
    assert corral.fake.bodies("POST", "/api/v1/jobs")[0]["command"] == "echo hi && sleep 1"


def test_submit_json_prints_the_job(corral: Cli) -> None:
    result = corral("submit", "--json", "--idempotency-key", "k", "--", "x")
    assert result.exit_code == 0
    job = json.loads(result.stdout)
    assert job["id"] == 1 and job["status"] == "pending"
    assert corral.fake.requests[-1].headers["Idempotency-Key"] == "k"


def test_submit_wait_exits_with_the_jobs_exit_code(corral: Cli) -> None:
    corral.fake.script(
        1,
        {"status": "starting"},
        RUNNING,
        RUNNING,
        {"status": "failed", "exit_code": 3, "termination_reason": "failed"},
    )
    result = corral("submit", "--wait", "--", "python", "train.py")
    assert result.exit_code == 3
    lines = result.stdout.splitlines()
    assert lines[0] == "submitted job 1 (job) to queue default"
    assert lines[1] == "job 1 running on n1 (GPUs n1:0,1), attempt 1"
    assert lines[2] == "job 1 failed (exit code 3)"
    assert len(lines) == 3  # the start is reported once
    assert corral.sleeps and all(s > 0 for s in corral.sleeps)


@pytest.mark.parametrize(
    ("final", "code"),
    [
        ({"status": "succeeded", "exit_code": 0}, 0),
        ({"status": "cancelled"}, 1),
        ({"status": "failed", "exit_code": None, "termination_reason": "timeout"}, 1),
        ({"status": "failed", "exit_code": -9}, 137),
    ],
)
def test_submit_wait_exit_codes(corral: Cli, final: dict[str, object], code: int) -> None:
    corral.fake.script(1, RUNNING, final)
    assert corral("submit", "--wait", "--", "x").exit_code == code


def test_submit_wait_json_prints_the_final_job(corral: Cli) -> None:
    corral.fake.script(1, RUNNING, {"status": "failed", "exit_code": 3})
    result = corral("submit", "--wait", "--json", "--", "x")
    assert result.exit_code == 3
    job = json.loads(result.stdout)
    assert (job["id"], job["status"], job["exit_code"]) == (1, "failed", 3)


def test_a_server_error_is_one_line(corral: Cli) -> None:
    result = corral("submit", "-q", "nope", "--", "x")
    assert result.exit_code == 1
    assert result.stderr == "error: queue: no queue 'nope'\n"
    assert result.stdout == ""


def test_connection_refused_is_the_cannot_reach_line(corral: Cli) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = corral("--server", url, "jobs", network=True)
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach the corral server at {url} (is it running?)\n"


def test_jobs_table(corral: Cli) -> None:
    corral.fake.add_job("pending", name="waits", wait_reason="insufficient_gpus")
    corral.fake.add_job("running", name="runs", nodes=["n1", "n2"])
    result = corral("jobs")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "QUEUE", "STATUS", "GPUS", "NODES", "AGE", "REASON"]
    assert lines[1].split()[:6] == ["2", "runs", "default", "running", "2", "n1,n2"]
    assert lines[2].split()[:4] == ["1", "waits", "default", "pending"]
    assert lines[2].split()[-1] == "insufficient_gpus"


def test_jobs_json_and_filters(corral: Cli) -> None:
    corral.fake.add_job("pending")
    corral.fake.add_job("running")
    corral.fake.add_job("failed")
    result = corral("jobs", "--status", "pending,running", "-s", "failed", "--json", "--limit", "2")
    assert result.exit_code == 0
    found = json.loads(result.stdout)
    assert [job["id"] for job in found["jobs"]] == [3, 2]
    assert found["next_before_id"] == 2
    assert corral.fake.requests[-1].url.params["status"] == "pending,running,failed"


def test_jobs_all_pages_through_everything(corral: Cli) -> None:
    for _ in range(3):
        corral.fake.add_job()
    result = corral("jobs", "--all", "--json")
    assert [job["id"] for job in json.loads(result.stdout)["jobs"]] == [3, 2, 1]


def test_jobs_rejects_an_unknown_status(corral: Cli) -> None:
    result = corral("jobs", "--status", "runing")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: unknown status 'runing' (one of pending,")


def test_show_a_pending_job_says_why(corral: Cli) -> None:
    corral.fake.add_job(
        "pending",
        wait_reason="waiting_for_quota",
        wait_message="queue default holds its fair share",
        events=[{"at": "2026-11-28T16:00:00Z", "kind": "submitted", "new_status": "pending"}],
    )
    result = corral("show", "1")
    assert result.exit_code == 0
    assert "waiting_for_quota: queue default holds its fair share" in result.stdout
    assert "python train.py" in result.stdout
    assert "2 GPUs x 1 node" in result.stdout
    assert "submitted  pending" in result.stdout


def test_a_waiting_job_shows_its_place_in_line(corral: Cli) -> None:
    corral.fake.add_job(
        "pending",
        queue="research",
        wait_reason="insufficient_gpus",
        wait_message="needs 2 GPUs on 1 node; the most free on one node is 1",
        wait_position=3,
        wait_estimated_start="2999-01-01T00:00:00Z",
    )
    corral.fake.add_job("pending", wait_reason="backoff")  # no position: the reason alone
    lines = corral("jobs").stdout.splitlines()
    assert lines[1].split()[-1] == "backoff"
    assert lines[2].split()[-2:] == ["insufficient_gpus", "#3"]
    shown = corral("show", "1").stdout
    assert "insufficient_gpus: needs 2 GPUs on 1 node" in shown
    assert "position:" in shown and "3 in queue research" in shown
    line = next(line for line in shown.splitlines() if line.startswith("estimated start:"))
    assert "2999-01-01" in line or "2998-12-31" in line  # local time
    assert line.endswith(")") and "(in " in line


def test_show_lists_every_attempt(corral: Cli) -> None:
    corral.fake.add_job(
        "failed",
        exit_code=3,
        termination_reason="failed",
        attempts_count=1,
        attempts=[ATTEMPT],
        name="[red]odd",
    )
    result = corral("show", "1")
    assert "[red]odd" in result.stdout  # printed as typed, not as markup
    row = next(line for line in result.stdout.splitlines() if line.startswith("1 "))
    assert "n1:0,1" in row and row.split()[-1] == "3"
    assert json.loads(corral("show", "1", "--json").stdout)["attempts"][0]["exit_code"] == 3


def test_show_an_unknown_job(corral: Cli) -> None:
    result = corral("show", "9")
    assert (result.exit_code, result.stderr) == (1, "error: no job 9\n")


def test_cancel_reports_each_job_and_fails_at_the_end(corral: Cli) -> None:
    corral.fake.add_job("pending", name="a")
    corral.fake.add_job("succeeded", name="b")
    corral.fake.add_job("running", name="c")
    result = corral("cancel", "1", "2", "3")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "cancelled job 1 (a)",
        "cancelling job 3 (c): stopping",
    ]
    assert result.stderr == "error: job 2: job 2 already ended (succeeded)\n"
    assert corral.fake.jobs[3]["status"] == "stopping"


def test_cancel_json(corral: Cli) -> None:
    corral.fake.add_job("pending")
    corral.fake.add_job("failed")
    result = corral("cancel", "1", "2", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert [job["status"] for job in out["jobs"]] == ["cancelled"]
    assert out["errors"][0]["code"] == "job_finished"


def test_logs_prints_the_log(corral: Cli) -> None:
    corral.fake.add_job("succeeded", attempts_count=2)
    corral.fake.logs[(1, 1)] = FakeLog(["first\n"])
    corral.fake.logs[(1, 2)] = FakeLog(["second\n"])
    assert corral("logs", "1").stdout == "second\n"
    assert corral("logs", "1", "--attempt", "1").stdout == "first\n"


def test_logs_follow_pages_until_the_job_ends(corral: Cli) -> None:
    corral.fake.add_job("running", attempts_count=1)
    log = FakeLog(["epoch 1\n", "epoch 2\n", "done\n"], ended=False)
    corral.fake.logs[(1, 1)] = log
    corral.fake.script(1, {"status": "running"}, {"status": "succeeded"})

    def end_once_all_is_out() -> None:
        if log.revealed == len(log.pieces):
            log.ended = True

    corral.on_sleep = end_once_all_is_out
    result = corral("logs", "-f", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "epoch 1\nepoch 2\ndone\n"
    offsets = [int(r.url.params["offset"]) for r in corral.fake.requests if "logs" in r.url.path]
    assert offsets[:3] == [0, 8, 16]
    assert corral.sleeps


def test_logs_follow_marks_a_new_attempt(corral: Cli) -> None:
    corral.fake.add_job("running", attempts_count=1)
    corral.fake.logs[(1, 1)] = FakeLog(["a\n"])
    corral.fake.logs[(1, 2)] = FakeLog(["b\n"])
    corral.fake.script(
        1,
        {"status": "running"},
        {"status": "running", "attempts_count": 2},
        {"status": "succeeded"},
    )
    result = corral("logs", "-f", "1")
    assert result.stdout == "a\nb\n"
    assert result.stderr == "--- attempt 2 ---\n"


def test_logs_json_is_one_chunk_per_line(corral: Cli) -> None:
    corral.fake.add_job("succeeded", attempts_count=1)
    corral.fake.logs[(1, 1)] = FakeLog(["a\n", "b\n"])
    lines = corral("logs", "1", "--json").stdout.splitlines()
    chunks = [json.loads(line) for line in lines]
    assert [(c["offset"], c["data"]) for c in chunks] == [(0, "a\n"), (2, "b\n")]


def test_show_tells_each_attempts_gpu_time_checkpoints_and_work_at_risk(corral: Cli) -> None:
    preempted = {
        **ATTEMPT,
        "reason": "preempted",
        "exit_code": 0,
        "gpu_count": 2,
        "gpu_seconds": 596.0,
        "resumed_from_step": 0,
        "last_checkpoint_step": 120,
        "last_checkpoint_at": "2026-11-28T16:04:00Z",
    }
    running = {
        **ATTEMPT,
        "id": 8,
        "number": 2,
        "status": "running",
        "started_at": "2026-11-28T16:06:00Z",
        "ended_at": None,
        "reason": None,
        "exit_code": None,
        "gpu_count": 2,
        "gpu_seconds": 7200.0,
        "resumed_from_step": 120,
        "work_at_risk_gpu_s": 1800.0,
    }
    corral.fake.add_job(
        "running",
        attempts_count=2,
        attempts=[preempted, running],
        spec={
            "command": ["python", "train.py"],
            "max_retries": 2,
            "retry_on_exit_codes": [75],
            "retry_on_timeout": True,
            "signal": {"name": "USR1", "notice_s": 60},
        },
    )
    lines = corral("show", "1").stdout.splitlines()
    header = " ".join(next(line for line in lines if line.startswith("#")).split())
    assert "ENDED GPU-TIME RESUMED CHECKPOINT AT RISK REASON EXIT" in header
    first = next(line for line in lines if line.startswith("1 "))
    second = next(line for line in lines if line.startswith("2 "))
    assert "9m56s" in first and "scratch" in first and "step 120 at" in first
    assert "2h" in second and "step 120" in second and "30m" in second
    assert "retry on:  exit codes 75; timeout" in lines
    assert "notice:    SIGUSR1 60s before a time limit or preemption" in lines
