"""Reports: the side-by-side table, JSON that round-trips, plots on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.sim.cluster import parse_shape
from scheduler.sim.report import format_queues, format_table, to_json
from scheduler.sim.run import SimConfig, SimResult, replay

from .factories import fifo, trace_job


def _result(label: str) -> SimResult:
    jobs = [trace_job(1, 4, 100), trace_job(2, 2, 50, at=10, queue="r")]
    return replay(jobs, SimConfig(parse_shape("1x4")), fifo(), may_preempt=False, label=label)


def test_the_table_has_one_column_per_result() -> None:
    table = format_table([_result("first"), _result("second")])
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "first", "second"]
    jct = next(line for line in lines if line.startswith("avg JCT (s)"))
    assert jct.split()[-2:] == ["120", "120"]  # (100 + 140) / 2
    assert any(line.startswith("  / lower bound 75") for line in lines)


def test_the_queue_table() -> None:
    table = format_queues(_result("x"))
    assert [line.split()[0] for line in table.splitlines()] == ["queue", "q", "r"]


def test_json_is_plain() -> None:
    data = to_json([_result("x")], {"trace": "t.csv"})
    again = json.loads(json.dumps(data))
    summary = again["results"][0]["summary"]
    assert summary["jct_s"]["mean"] == 120.0
    assert summary["jct_ratio"] == pytest.approx(120 / 75)
    assert again["results"][0]["engine"]["cycles"] >= 1
    assert again["setup"] == {"trace": "t.csv"}


def test_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from scheduler.sim.plots import write_plots

    written = write_plots([_result("a"), _result("b/c")], tmp_path)
    names = sorted(p.name for p in written)
    assert names == [
        "allocation.png",
        "index.html",
        "jct_cdf.png",
        "queue_length.png",
        "share_a.png",
        "share_b_c.png",
    ]
    assert all(p.stat().st_size > 0 for p in written)
    assert "share_a.png" in (tmp_path / "index.html").read_text(encoding="utf-8")
