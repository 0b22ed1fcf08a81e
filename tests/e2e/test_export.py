"""``corral jobs --export``: a live cluster's history, replayed by ``corral simulate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from scheduler.domain.spec import JobSpec, Resources
from scheduler.localcluster import LocalCluster
from scheduler.sim.history import read_history
from tests.e2e.conftest import cli_for
from tests.e2e.test_workloads import run_to_end

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _job(name: str, code: str, gpus: int = 1) -> JobSpec:
    return JobSpec(name=name, command=[sys.executable, "-c", code], resources=Resources(gpus=gpus))


def test_export_writes_what_ended_and_simulate_replays_it(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    with shared_cluster.client() as client:
        ok = client.submit(_job("ok", "import time; time.sleep(3)", gpus=2)).id
        bad = client.submit(_job("bad", "raise SystemExit(3)")).id
        for job_id in (ok, bad):
            run_to_end(shared_cluster, client, job_id, 120)
        live = client.submit(_job("live", "import time; time.sleep(60)")).id  # not ended
        cli = cli_for(shared_cluster, tmp_path)
        target = tmp_path / "history.jsonl"
        try:
            done = cli.run("jobs", "--export", str(target))
        finally:
            client.cancel(live)
    assert done.returncode == 0, done.stderr
    records = {r["id"]: r for r in map(json.loads, target.read_text().splitlines())}
    assert {ok, bad} <= set(records) and live not in records
    assert records[ok]["status"] == "succeeded" and records[ok]["gpus"] == 2
    assert records[bad]["status"] == "failed"
    assert records[ok]["run_s"] >= 1.0  # it slept 3 s on its GPUs (start/end are reported)
    jobs, problems = read_history(target)
    assert problems == [] and {j.job_id for j in jobs} >= {ok, bad}

    simulated = cli.run("simulate", str(target), "--cluster", "2x2", "--json")
    assert simulated.returncode == 0, simulated.stderr
    report = json.loads(simulated.stdout)
    assert report["setup"]["jobs"] == len(jobs)
    assert report["results"][0]["summary"]["unfinished"] == 0

    refused = cli.run("jobs", "--export", str(target), "--status", "running")
    assert refused.returncode != 0
    assert refused.stderr.startswith("error: --export takes only --queue and --since")
