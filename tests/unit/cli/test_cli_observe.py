"""``corral usage`` and ``corral top --once`` against the fake API; top's pure pieces."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from scheduler.cli.top import bar, queue_heads
from scheduler.domain.views import JobView

from .conftest import Cli
from .fake_api import FakeCorral, gpu_dict, job_dict, node_dict, queue_dict

REPORT = {
    "by": "queue",
    "since": "2026-11-21T16:00:00Z",
    "until": "2026-11-28T16:00:00Z",
    "entries": [
        {"key": "ml", "gpu_hours_allocated": 10.0, "gpu_hours_used": 7.5,
         "gpu_hours_lost_to_preemption": 1.25, "jobs_run": 4, "jobs_failed": 1,
         "jobs_preempted": 2},
    ],
}  # fmt: skip


def _serve_usage(fake: FakeCorral, seen: list[httpx.QueryParams]) -> None:
    routes = fake.routes

    def usage(request: httpx.Request, _: re.Match[str]) -> httpx.Response:
        seen.append(request.url.params)
        return httpx.Response(200, json={**REPORT, "by": request.url.params["by"]})

    fake.routes = lambda: [*routes(), ("GET", "/api/v1/usage", usage)]  # type: ignore[method-assign]


def test_usage_prints_a_table_and_writes_csv(corral: Cli, tmp_path: Path) -> None:
    seen: list[httpx.QueryParams] = []
    _serve_usage(corral.fake, seen)
    out = tmp_path / "usage.csv"
    result = corral("usage", "--by", "user", "--since", "30d", "--csv", str(out))
    assert result.exit_code == 0, result.stderr
    assert (seen[0]["by"], seen[0]["since"]) == ("user", "30d")
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith("ml"))
    assert row == ["ml", "10.00", "7.50", "75%", "1.25", "4", "1", "2"]
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"key": "ml", "gpu_hours_allocated": "10.0", "gpu_hours_used": "7.5",
         "gpu_hours_lost_to_preemption": "1.25", "jobs_run": "4", "jobs_failed": "1",
         "jobs_preempted": "2"}
    ]  # fmt: skip
    as_json = json.loads(corral("usage", "--json").stdout)
    assert as_json["entries"][0]["gpu_hours_used"] == 7.5


def test_usage_csv_to_an_unwritable_path_is_one_line(corral: Cli, tmp_path: Path) -> None:
    _serve_usage(corral.fake, [])
    result = corral("usage", "--csv", str(tmp_path / "no-such-dir" / "u.csv"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot write") and result.stderr.count("\n") == 1


def test_top_once_shows_gpus_jobs_and_queue_heads(corral: Cli) -> None:
    fake = corral.fake
    fake.nodes["gpu-01"] = node_dict(
        "gpu-01", gpus=[gpu_dict(0, job_id=7, utilization_pct=90.0), gpu_dict(1)]
    )
    fake.jobs[7] = job_dict(7, "running", gpus=[{"node": "gpu-01", "index": 0}])
    fake.jobs[8] = job_dict(8, "pending", wait_reason="insufficient_gpus", wait_position=1)
    fake.queues["default"] = queue_dict("default", pending=1, allocated_gpus=1)
    result = corral("top", "--once")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert text.count("corral top") == 1
    assert "job 7" in text and "free" in text and "90%" in text
    assert "job 8 (job8): insufficient_gpus #1" in text
    shown = json.loads(corral("top", "--json").stdout)
    assert [n["name"] for n in shown["nodes"]] == ["gpu-01"]
    assert shown["heads"]["default"]["id"] == 8


@pytest.mark.parametrize(
    ("pct", "filled", "style"), [(0.0, 0, "green"), (50.0, 6, "yellow"), (100.0, 12, "red")]
)
def test_bar_fills_and_colours_by_utilisation(pct: float, filled: int, style: str) -> None:
    text = bar(pct)
    assert text.plain.count("█") == filled and text.plain.endswith(f"{pct:3.0f}%")
    assert filled == 0 or text.spans[0].style == style
    assert "-" in bar(None).plain


def _job(job_id: int, queue: str, position: int | None, **extra: Any) -> JobView:
    return JobView.model_validate(job_dict(job_id, queue=queue, wait_position=position, **extra))


def test_queue_heads_take_the_first_in_line_of_each_queue() -> None:
    heads = queue_heads([_job(1, "a", 2), _job(2, "a", 1), _job(3, "b", None), _job(4, "b", None)])
    assert {q: j.id for q, j in heads.items()} == {"a": 2, "b": 3}


def test_nodes_list_shows_free_gpus_gpu_memory_and_health_flags(corral: Cli) -> None:
    corral.fake.nodes["gpu-01"] = node_dict(
        "gpu-01", gpu_memory_used_mib=40960, gpu_memory_total_mib=8 * 81920,
        gpus_unhealthy=1, gpus_with_ecc_errors=2,
    )  # fmt: skip
    corral.fake.nodes["gpu-02"] = node_dict("gpu-02", state="lost")
    result = corral("nodes")
    assert result.exit_code == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split()[:8] == ["NAME", "STATE", "GPUS", "FREE", "TYPES", "GPU", "UTIL", "GPU"]
    assert "40G/640G" in first and "6" in first.split()
    assert "1 GPU(s) unhealthy, ECC errors on 2 GPU(s)" in first
    assert "agent lost" in second
    show = corral("nodes", "show", "gpu-01").stdout
    assert "health:" in show and "ECC errors on 2 GPU(s)" in show


def test_jobs_and_show_flag_an_idle_job(corral: Cli) -> None:
    corral.fake.jobs[7] = job_dict(7, "running", idle_since="2026-11-28T15:00:00Z")
    corral.fake.jobs[8] = job_dict(8, "running")
    rows = {line.split()[0]: line for line in corral("jobs").stdout.splitlines()[1:]}
    assert "IDLE since" in rows["7"] and "IDLE" not in rows["8"]
    shown = corral("show", "7").stdout
    assert any(line.startswith("idle:") for line in shown.splitlines()), shown
    assert "idle:" not in corral("show", "8").stdout
