"""Human formats: durations, ages, sizes, GPU lists, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner

from scheduler.cli import render
from scheduler.domain.views import GpuRefView, QueueInfo


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (45, "45s"),
        (60, "1m"),
        (303, "5m3s"),
        (3600, "1h"),
        (3725, "1h2m"),
        (3605, "1h"),
        (90000, "1d1h"),
        (-5, "0s"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert render.format_duration(seconds) == text


def test_age_and_time() -> None:
    now = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)
    assert render.age(now - timedelta(minutes=5, seconds=3), now) == "5m3s"
    assert render.format_time(now - timedelta(hours=2), now).endswith("(2h ago)")
    assert render.format_time(None) == "-"


def test_sizes_and_gpus() -> None:
    assert (render.format_mib(81920), render.format_mib(512), render.format_mib(None)) == (
        "80G",
        "512M",
        "-",
    )
    gpus = [
        GpuRefView(node="a", index=0),
        GpuRefView(node="a", index=1),
        GpuRefView(node="b", index=3),
    ]
    assert render.format_gpus(gpus) == "a:0,1 b:3"
    assert render.format_gpus([]) == "-"


def test_resources_text() -> None:
    spec = {
        "resources": {
            "gpus": 2,
            "nodes": 2,
            "gpu_type": "H100",
            "gpu_memory_mib": 40960,
            "cpus": 8,
            "memory_mib": 65536,
        }
    }
    assert render.resources_text(spec) == (
        "2 GPUs x 2 nodes, H100, >=40G GPU memory, 8 CPUs, 64G memory"
    )
    assert render.resources_text({}) == "1 GPU x 1 node"
    assert render.command_text({"command": ["python", "a b.py"]}) == "python 'a b.py'"
    assert render.command_text({"command": "echo hi && x"}) == "echo hi && x"


def test_echo_json_is_indented_model_dump() -> None:
    queue = QueueInfo(name="q", weight=1, guaranteed_gpus=0)

    def run() -> None:
        render.echo_json({"queues": [queue]})

    result = CliRunner().invoke(click.command()(run))
    assert json.loads(result.stdout) == {"queues": [queue.model_dump(mode="json")]}
    assert result.stdout.startswith('{\n  "queues": [')
