"""``corral queues`` and ``corral nodes`` against the fake API."""

from __future__ import annotations

import json

from .conftest import Cli
from .fake_api import gpu_dict, node_dict


def test_queues_lists_by_default(corral: Cli) -> None:
    result = corral("queues")
    assert result.exit_code == 0
    header, row = result.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "WEIGHT", "GUARANTEED"]
    assert row.split()[:5] == ["default", "1", "0", "unlimited", "unlimited"]
    assert json.loads(corral("queues", "--json").stdout)["queues"][0]["name"] == "default"
    assert json.loads(corral("queues", "list", "--json").stdout)["queues"][0]["weight"] == 1.0


def test_queues_create_and_update(corral: Cli) -> None:
    result = corral("queues", "create", "research", "--weight", "2", "--guaranteed-gpus", "4")
    assert result.exit_code == 0, result.output
    assert "guaranteed GPUs:" in result.stdout and "research" in result.stdout
    assert corral.fake.bodies("POST", "/api/v1/queues") == [
        {
            "name": "research",
            "weight": 2.0,
            "guaranteed_gpus": 4,
            "borrow_limit_gpus": None,
            "max_gpus": None,
        }
    ]
    result = corral("queues", "update", "research", "--max-gpus", "8", "--json")
    assert json.loads(result.stdout)["max_gpus"] == 8
    assert corral.fake.bodies("PATCH", "/api/v1/queues/research") == [{"max_gpus": 8}]
    assert json.loads(corral("queues", "show", "research", "--json").stdout)["weight"] == 2.0


def test_queue_input_errors_are_one_line(corral: Cli) -> None:
    result = corral("queues", "create", "q", "--guaranteed-gpus", "4", "--max-gpus", "2")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: invalid queue spec: max_gpus must not be below guaranteed_gpus\n",
    )
    result = corral("queues", "update", "q")
    assert result.exit_code == 1 and result.stderr.startswith("error: nothing to update")
    result = corral("queues", "create", "default")
    assert (result.exit_code, result.stderr) == (1, "error: queue default exists already\n")
    assert corral("queues", "create", "bad name!").stderr.startswith(
        "error: invalid queue spec: name:"
    )


def test_nodes_list_show_drain_undrain(corral: Cli) -> None:
    corral.fake.nodes["gpu-01"] = node_dict(
        "gpu-01",
        utilization_pct=50.0,
        gpus=[
            gpu_dict(0, job_id=12, utilization_pct=99.0, memory_used_mib=40960),
            gpu_dict(1, healthy=False),
        ],
    )
    result = corral("nodes")
    assert result.exit_code == 0
    row = result.stdout.splitlines()[1].split()
    assert row[:4] == ["gpu-01", "up", "2/8", "used"]
    result = corral("nodes", "show", "gpu-01")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    gpu_rows = [line.split() for line in lines if line.startswith(("0 ", "1 "))]
    assert gpu_rows[0][:4] == ["0", "A100-80GB", "40G/80G", "99%"] and "12" in gpu_rows[0]
    assert "UNHEALTHY" in gpu_rows[1]
    assert json.loads(corral("nodes", "show", "gpu-01", "--json").stdout)["gpus"][1]["index"] == 1
    result = corral("nodes", "drain", "gpu-01", "--reason", "replace a fan")
    assert result.stdout == "drained node gpu-01: replace a fan\n"
    assert corral("nodes", "undrain", "gpu-01").stdout == "node gpu-01 is up\n"


def test_an_unknown_node(corral: Cli) -> None:
    result = corral("nodes", "show", "nope")
    assert (result.exit_code, result.stderr) == (1, "error: no node nope\n")
