"""A job's whole attempt history over HTTP and through the CLI: ``GET /api/v1/jobs/{id}``
and ``corral show`` list every attempt with how it ended, and ``corral logs --attempt N``
prints the output of each one, not only the latest.

The job fails once (retried), is stopped by its agent (preempted, requeued) and then
succeeds: three attempts, each shipping its own log. The CLI runs in-process against
the same app (the ``TestClient``'s transport), so it reads what the server stored.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from click.testing import CliRunner, Result

from scheduler.cli.config import CliContext
from scheduler.cli.main import cli
from scheduler.domain.retry import RetrySettings
from scheduler.domain.sync import AttemptReport, ProgressReport
from tests.checks import assert_no_attempt_overlap
from tests.factories import exited, node_facts, report
from tests.integration.api.harness import JOBS, Api

NODE = node_facts("n1", 2)
ENDINGS = {  # attempt number -> (its output, how it ends)
    1: (b"one\n", lambda a, size: exited(a, 3, log=(size, b""))),
    2: (b"two\n", lambda a, size: exited(a, -15, stopped_by_agent=True, log=(size, b""))),
    3: (b"three\n", lambda a, size: exited(a, 0, log=(size, b""))),
}


def corral(api: Api, *args: str) -> Result:
    """``corral ARGS`` against this app, as its admin."""
    transport = api.http._transport  # the TestClient's in-process transport
    obj = CliContext(server=str(api.http.base_url), token=api.token, transport=transport)
    return CliRunner().invoke(cli, list(args), obj=obj, catch_exceptions=False)


def run_attempt(api: Api, number: int) -> int:
    """Place the job's next attempt, let it print its line and end; its id."""
    assert api.cycle().placed == 1, f"attempt {number} was not placed"
    (launch,) = api.sync(NODE).run
    log, ending = ENDINGS[number]
    resumed = ProgressReport(step=10 * number, resumed_from_step=10 * (number - 1))
    running: AttemptReport = report(launch.attempt_id, log=(0, log), progress=resumed)
    api.sync(NODE, running)
    api.sync(NODE, ending(launch.attempt_id, len(log)))
    return launch.attempt_id


def test_every_attempt_is_in_the_history_and_has_its_log(api: Api) -> None:
    api.rt.settings = replace(api.rt.settings, retry=RetrySettings(backoff_base_s=0))
    api.sync(NODE)
    job_id = api.submit(max_retries=2)["id"]
    ids = [run_attempt(api, number) for number in ENDINGS]

    job: dict[str, Any] = api.job(job_id)
    assert (job["status"], job["attempts_count"], job["retries_used"]) == ("succeeded", 3, 1)
    attempts = job["attempts"]
    assert [a["id"] for a in attempts] == ids
    assert [(a["number"], a["reason"], a["exit_code"]) for a in attempts] == [
        (1, "failed", 3),
        (2, "preempted", -15),
        (3, "succeeded", 0),
    ]
    for attempt in attempts:
        assert attempt["nodes"] == ["n1"] and len(attempt["gpus"]) == 1
        assert attempt["started_at"] and attempt["ended_at"]
        assert attempt["gpu_count"] == 1 and attempt["gpu_seconds"] >= 0
        assert attempt["resumed_from_step"] == 10 * (attempt["number"] - 1)
        assert attempt["work_at_risk_gpu_s"] is None  # ended: nothing at risk
    messages = [e["message"] for e in job["events"]]
    assert any("retry 1 of 2 in 0s" in m for m in messages)
    assert any("requeued keeping its place" in m for m in messages)

    for number, (log, _) in ENDINGS.items():
        chunk = api.ok("GET", f"{JOBS}/{job_id}/logs", params={"attempt": number})
        assert (chunk["attempt"], chunk["data"], chunk["complete"]) == (number, log.decode(), True)
        printed = corral(api, "logs", str(job_id), "--attempt", str(number))
        assert (printed.exit_code, printed.stdout) == (0, log.decode())
    assert corral(api, "logs", str(job_id)).stdout == "three\n"  # the latest by default
    missing = corral(api, "logs", str(job_id), "--attempt", "4")
    assert missing.exit_code == 1
    assert missing.stderr.endswith(f"job {job_id} has no attempt 4\n")

    shown = corral(api, "show", str(job_id)).stdout.splitlines()
    rows = [line.split()[:2] for line in shown if line[:2] in ("1 ", "2 ", "3 ")]
    assert rows == [["1", "ended"], ["2", "ended"], ["3", "ended"]]
    assert_no_attempt_overlap(api.rt.db)
