"""The load benchmark (``benchmarks/load.py``) at a tiny size: it runs and reports every figure.

The figures themselves depend on the machine; this checks that a run measures them all
(latencies from answered syncs, the cycle from the server's histogram, CPU and RSS from
``/proc``) and that the system held the jobs and nodes it was asked for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.load import ROWS, parse_args
from tests.conftest import PostgresServer, _in_ci

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"


def test_quick_sizes_and_explicit_knobs() -> None:
    quick, _ = parse_args(["--quick"])
    assert (quick.agents, quick.jobs, quick.pending, quick.duration_s) == (100, 5000, 300, 30.0)
    full, _ = parse_args([])
    assert (full.agents, full.jobs, full.interval_s) == (1000, 100_000, 5.0)
    mine, _ = parse_args(["--quick", "--agents", "7", "--pending", "0"])
    assert (mine.agents, mine.jobs, mine.pending) == (7, 5000, 0)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.postgres
def test_a_tiny_run_reports_every_figure(tmp_path: Path, postgres_server: PostgresServer) -> None:
    if postgres_server.url is None:
        if _in_ci():
            pytest.fail(f"CI=true but PostgreSQL is unavailable: {postgres_server.why_not}")
        pytest.skip(f"PostgreSQL unavailable: {postgres_server.why_not}")
    out = tmp_path / "load.json"
    sizes = ["--agents", "6", "--jobs", "200", "--pending", "12", "--gpus-per-agent", "2"]
    timing = ["--duration", "4", "--interval-s", "1", "--job-s", "1"]
    target = ["--database-url", postgres_server.url, "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *sizes, *timing, *target],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "sync latency p99" in done.stdout  # the table
    report = json.loads(out.read_text())
    figures = report["figures"]
    missing = [key for key, _label, _fmt in ROWS if figures.get(key) is None]
    assert not missing, figures
    assert figures["syncs"] > 0 and figures["sync_errors"] == 0
    assert figures["cycles"] >= 1 and figures["server_rss_mib"] > 0
    assert figures["sync_p50_ms"] <= figures["sync_p99_ms"] <= figures["sync_max_ms"]
    counts = figures["jobs_by_status"]
    assert counts.pop("nodes") == 6
    assert sum(counts.values()) == 200
    assert isinstance(report["targets_met"], bool)
