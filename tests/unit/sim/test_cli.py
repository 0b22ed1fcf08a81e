"""``corral simulate`` end to end on small traces written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli.main import cli
from scheduler.policy.registry import ORDERINGS

from .factories import write_lines, write_philly

ROWS = [
    "2017-10-09 00:00:00,100.0,4,400.0,a",
    "2017-10-09 00:00:10,50.0,2,100.0,b",
    "2017-10-09 00:00:20,30.0,2,60.0,a",
]


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return write_philly(tmp_path / "philly.csv", ROWS)


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["simulate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_table(trace: Path) -> None:
    code, out, err = _run(str(trace), "--cluster", "1x4", "--per-queue")
    assert code == 0, err
    assert "avg JCT (s)" in out
    assert "queues under" in out
    assert "simulating" in err


def test_json_with_a_vc_file(trace: Path, tmp_path: Path) -> None:
    vc = write_lines(tmp_path / "vc.csv", ["vc,node num", "a,3", "b,1"])
    code, out, err = _run(str(trace), "--cluster", "1x4", "--queues-from-vc", str(vc), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["setup"]["gpus"] == 4
    assert [q["guaranteed_gpus"] for q in data["setup"]["queues"]] == [3, 1]
    assert data["results"][0]["summary"]["jobs"] == 3


def test_compare_every_registered_ordering(trace: Path) -> None:
    names = ",".join(ORDERINGS)
    code, out, err = _run(str(trace), "--cluster", "1x4", "--compare", names)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["metric", *ORDERINGS]


def test_window_and_queue_subset(trace: Path) -> None:
    code, out, err = _run(
        str(trace), "--cluster", "1x4", "--start", "2017-10-09T00:00:05", "--queues", "a", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["setup"]["jobs"] == 1


def test_a_malformed_row_is_one_error_line(tmp_path: Path) -> None:
    bad = write_philly(tmp_path / "bad.csv", [*ROWS, "2017-10-09 00:00:30,1.0,x,1.0,a"])
    code, _, err = _run(str(bad))
    assert code == 1
    assert err.strip() == f"error: {bad}: row 5: num_gpus 'x' is not a number"
    code, _, err = _run(str(bad), "--skip-bad-rows", "--cluster", "1x4")
    assert code == 0
    assert "row 5 left out" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "no_such_ordering"], "unknown ordering 'no_such_ordering'"),
        (["--cluster", "big"], "is not NODESxGPUS"),
        (["--param", "nope=1"], "unknown policy param 'nope'"),
        (["--param", "min_runtime_s=soon"], "min_runtime_s: 'soon' is not a float"),
        (["--start", "2030-01-01"], "no job of the trace"),
    ],
)
def test_bad_options(trace: Path, args: list[str], message: str) -> None:
    code, _, err = _run(str(trace), *args)
    assert code == 1
    assert message in err


def test_plots(trace: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    code, _, err = _run(str(trace), "--cluster", "1x4", "--plots", str(tmp_path / "out"))
    assert code == 0, err
    assert (tmp_path / "out" / "jct_cdf.png").exists()


def test_help_lists_simulate() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "simulate" in result.stdout
