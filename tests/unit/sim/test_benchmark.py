"""``benchmarks/policy.py`` end to end on a tiny traces directory written by the test."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .factories import write_alibaba, write_lines, write_philly

ROOT = Path(__file__).resolve().parents[3]


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("policy_benchmark", ROOT / "benchmarks/policy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _traces(root: Path) -> Path:
    (root / "converted").mkdir(parents=True)
    (root / "philly_pollux").mkdir()
    write_alibaba(
        root / "converted/philly_week_20171009_alibaba_sim_format.csv",
        ["0,a,1,4,66,116,1,MISC,1,1,1", "1,b,8,32,500,200,1,MISC,1,1,1"],
    )
    write_philly(
        root / "philly_pollux/philly.csv",
        ["2017-10-09 00:01:56,66.0,1,66.0,a", "2017-10-20 00:00:00,10.0,2,20.0,b"],
    )
    write_lines(root / "philly_vc.csv", ["vc,node num", "a,1", "b,1"])
    return root


def test_the_benchmark_runs_every_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _benchmark()
    traces = _traces(tmp_path / "traces")
    out = tmp_path / "figures.json"
    code = bench.main(
        [
            "--traces",
            str(traces),
            "--policies",
            "priority_fifo,no_such_ordering",
            "--month",
            "2017-10-01:2017-10-15",
            "--cluster",
            "2x8",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr()
    assert "skipped no_such_ordering" in printed.err
    assert "targets for priority_fifo:" in printed.out
    figures = json.loads(out.read_text(encoding="utf-8"))
    jobs = {name: f["results"][0]["summary"]["jobs"] for name, f in figures.items()}
    assert jobs == {"week": 2, "month": 1, "full": 2}
