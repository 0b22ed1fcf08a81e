"""What the server under load spends, for ``benchmarks/load.py``: CPU and memory of its
processes from ``/proc``, and its own cycle and sync histograms from ``/metrics``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from scheduler.localcluster import LocalCluster

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> dict[int, float]:
    """User plus system CPU seconds of each of these processes still alive."""
    spent = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            spent[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return spent


def cpu_since(before: dict[int, float], now: dict[int, float]) -> float:
    """CPU seconds spent since ``before`` by the processes alive now (one that ended in
    between is not counted: a PostgreSQL backend of a closed connection)."""
    return sum(spent - before.get(pid, 0.0) for pid, spent in now.items())


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def with_children(pid: int) -> list[int]:
    """``pid`` and its child processes (a server's workers, PostgreSQL's backends)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return [pid, *children]


def postgres_pids(data_dir: Path | None) -> list[int]:
    """The postmaster (from its pid file) and its children, the backends."""
    if data_dir is None or not (data_dir / "postmaster.pid").exists():
        return []
    return with_children(int((data_dir / "postmaster.pid").read_text().split()[0]))


CYCLE, SYNC = "corral_cycle_duration_seconds", "corral_agent_sync_duration_seconds"
REPORTS = "corral_agent_report_write_seconds"


def histograms(cluster: LocalCluster) -> dict[str, dict[float, float]]:
    """The cycle's, the sync's and the reports' write histograms from ``/metrics``:
    ``le`` bound -> cumulative count, plus ``sum`` under key -1."""
    response = httpx.get(
        f"{cluster.url}/metrics",
        headers={"Authorization": f"Bearer {cluster.token}"},
        timeout=120,
    )
    response.raise_for_status()
    found: dict[str, dict[float, float]] = {CYCLE: {}, SYNC: {}, REPORTS: {}}
    for family in text_string_to_metric_families(response.text):
        buckets = found.get(family.name)
        if buckets is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                buckets[-1.0] = sample.value
    return found


def _window(before: dict[float, float], after: dict[float, float]) -> tuple[float, float, Any]:
    """(count, sum, quantile -> its bucket's upper bound) of the observations between."""
    bounds = sorted(b for b in after if b >= 0)
    delta = {b: after[b] - before.get(b, 0.0) for b in bounds}
    count = delta[bounds[-1]] if bounds else 0.0
    total = after.get(-1.0, 0.0) - before.get(-1.0, 0.0)

    def bound(q: float) -> float | None:
        return next((b for b in bounds if delta[b] >= q * count), None) if count else None

    return count, total, bound


def histogram_figures(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, Any]:
    """Cycles in the window (how many, the mean, p99 as its bucket's upper bound), the
    server's own time per sync, and the time from a sync to the commit of the starts and
    ends it reported, whether its reply waited for it or not (p50 and p99 as bucket
    bounds)."""
    count, total_s, cycle_bound = _window(before[CYCLE], after[CYCLE])
    _, _, sync_bound = _window(before[SYNC], after[SYNC])
    written, _, write_bound = _window(before[REPORTS], after[REPORTS])
    return {
        "cycles": int(count),
        "cycle_mean_s": total_s / count if count else None,
        "cycle_p99_le_s": cycle_bound(0.99),
        "sync_server_p50_le_ms": _ms(sync_bound(0.50)),
        "sync_server_p99_le_ms": _ms(sync_bound(0.99)),
        "reports_written": int(written),
        "report_write_p50_le_ms": _ms(write_bound(0.50)),
        "report_write_p99_le_ms": _ms(write_bound(0.99)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
