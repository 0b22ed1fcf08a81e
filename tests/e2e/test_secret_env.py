"""End to end: a secret env value reaches the job's process and no view of the job.

The job writes ``$MY_SECRET`` to a file (not to its log): the file holds the value,
while ``corral show --json``, ``corral jobs --json``, the job's log and the server's
and agents' own logs never do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.localcluster import LocalCluster
from tests.e2e.conftest import Cli, cli_for
from tests.e2e.test_spine import submit, wait_status

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FILE_SECRET = "s3cr3t-from-a-file"
YAML_SECRET = "s3cr3t-from-yaml"


def test_the_job_gets_the_secrets_and_no_view_shows_them(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    cli = cli_for(shared_cluster, tmp_path)
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"# for the upload\nMY_SECRET={FILE_SECRET}\n")
    spec = tmp_path / "job.yaml"
    spec.write_text(f"secret_env:\n  YAML_SECRET: {YAML_SECRET}\nenv:\n  PLAIN: shown\n")
    out = tmp_path / "out.txt"
    script = f'printf "%s|%s|%s" "$MY_SECRET" "$YAML_SECRET" "$PLAIN" > {out}; echo done'
    job_id = submit(
        cli, "-f", str(spec), "--secret-env-file", str(secrets), "-g", "1", "--", script
    )

    job = wait_status(cli, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    assert out.read_text() == f"{FILE_SECRET}|{YAML_SECRET}|shown"

    shown = cli.run("show", str(job_id), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["spec"]["secret_env"] == {
        "MY_SECRET": "***",
        "YAML_SECRET": "***",
    }
    texts = {
        "show": shown.stdout,
        "jobs": cli.run("jobs", "--json").stdout,
        "log": cli.run("logs", str(job_id)).stdout,
    }
    for path in (shared_cluster.data_dir / "logs").glob("*.log"):
        texts[path.name] = path.read_text(errors="replace")
    assert "done" in texts["log"]
    for name, text in texts.items():
        assert FILE_SECRET not in text and YAML_SECRET not in text, name


def test_a_bad_secret_line_names_the_line_not_the_value(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    cli: Cli = cli_for(shared_cluster, tmp_path)
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"MY_SECRET={FILE_SECRET}\n{FILE_SECRET}\n")
    refused = cli.run("submit", "--secret-env-file", str(secrets), "--", "true")
    assert refused.returncode != 0
    assert refused.stderr == f"error: {secrets}:2: expected NAME=VALUE\n"
