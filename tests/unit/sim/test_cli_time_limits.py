"""``corral simulate --time-limits``: the option reaches the replay, bad values fail early."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from scheduler.cli.main import cli

from .factories import write_philly

# 1 node of 2 GPUs: job 1 (2 GPUs, 600 s) holds it; job 2 (1 GPU, 100 s) waits.
ROWS = ["2017-10-09 00:00:00,600.0,2,1200.0,a", "2017-10-09 00:00:10,100.0,1,100.0,a"]


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["simulate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_limits_are_in_the_setup_and_a_short_factor_times_jobs_out(tmp_path: Path) -> None:
    trace = write_philly(tmp_path / "philly.csv", ROWS)
    code, out, err = _run(str(trace), "--cluster", "1x2", "--time-limits", "x0.5", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["setup"]["time_limits"] == "x0.5"
    summary = data["results"][0]["summary"]
    assert (summary["jobs"], summary["unfinished"]) == (0, 2)  # 600 s > 300 s; 100 s > 60 s
    assert "2 jobs reached their time limit (x0.5)" in err


def test_the_default_is_no_limit(tmp_path: Path) -> None:
    trace = write_philly(tmp_path / "philly.csv", ROWS)
    code, out, err = _run(str(trace), "--cluster", "1x2", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["setup"]["time_limits"] == "none"
    assert data["results"][0]["summary"]["jobs"] == 2


def test_a_bad_value_is_one_error_line(tmp_path: Path) -> None:
    trace = write_philly(tmp_path / "philly.csv", ROWS)
    code, _out, err = _run(str(trace), "--time-limits", "double")
    assert code != 0
    assert err.startswith("error: time limits 'double'")
    assert len(err.strip().splitlines()) == 1


def test_wake_ups_are_on_unless_turned_off(tmp_path: Path) -> None:
    trace = write_philly(tmp_path / "philly.csv", ROWS)
    for flag, expected in (("--wake-ups", True), ("--no-wake-ups", False)):
        code, out, err = _run(str(trace), "--cluster", "1x2", flag, "--json")
        assert code == 0, err
        assert json.loads(out)["setup"]["wake_ups"] is expected
