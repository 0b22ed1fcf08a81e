"""``corral queues`` and ``corral nodes`` against the fake API."""

from __future__ import annotations

import json

import pytest

from .conftest import Cli
from .fake_api import gpu_dict, node_dict, queue_dict

HEADER = [
    "NAME",
    "PARENT",
    "WEIGHT",
    "GUARANTEE",
    "FAIR SHARE",
    "HELD",
    "BORROWED",
    "USAGE (GPU-h)",
    "PENDING",
]


def test_queues_lists_by_default(corral: Cli) -> None:
    result = corral("queues")
    assert result.exit_code == 0
    header, row = result.stdout.splitlines()
    assert header.split() == " ".join(HEADER).split()
    assert row.split() == ["default", "-", "1", "0", "0", "0", "0", "0", "0"]
    assert json.loads(corral("queues", "--json").stdout)["queues"][0]["name"] == "default"
    assert json.loads(corral("queues", "list", "--json").stdout)["queues"][0]["weight"] == 1.0


def test_queues_show_shares_like_sshare_with_each_org_before_its_queues(corral: Cli) -> None:
    corral.fake.queues = {
        name: queue_dict(name, **extra)
        for name, extra in {
            "vision": {
                "parent": "ml",
                "guaranteed_gpus": 4,
                "fair_share_gpus": 5.25,
                "allocated_gpus": 6,
                "borrowed_gpus": 2,
                "usage_gpu_hours": 12.04,
                "pending": 3,
            },
            "default": {},
            "ml": {"guaranteed_gpus": 8, "fair_share_gpus": 8.0, "allocated_gpus": 6},
            "audio": {"parent": "ml", "weight": 2.0, "fair_share_gpus": 2.75},
        }.items()
    }
    rows = [line.split() for line in corral("queues").stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["default", "ml", "audio", "vision"]
    assert rows[3] == ["vision", "ml", "1", "4", "5.2", "6", "2", "12", "3"]
    assert rows[2][:5] == ["audio", "ml", "2", "0", "2.8"]
    assert rows[1][:2] == ["ml", "-"]


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
            "parent": None,
            "type_quotas": [],
            "idle_action": "none",
        }
    ]
    result = corral("queues", "update", "research", "--max-gpus", "8", "--json")
    assert json.loads(result.stdout)["max_gpus"] == 8
    assert corral.fake.bodies("PATCH", "/api/v1/queues/research") == [{"max_gpus": 8}]
    assert json.loads(corral("queues", "show", "research", "--json").stdout)["weight"] == 2.0


def test_queues_create_and_update_orgs_and_type_quotas(corral: Cli) -> None:
    args = ["--parent", "ml", "--type-quota", "A100-80GB=4:8", "--type-quota", "L4=2"]
    result = corral("queues", "create", "vision", *args)
    assert result.exit_code == 0, result.output
    (body,) = corral.fake.bodies("POST", "/api/v1/queues")
    assert body["parent"] == "ml"
    assert body["type_quotas"] == [
        {"gpu_type": "A100-80GB", "guaranteed_gpus": 4, "max_gpus": 8},
        {"gpu_type": "L4", "guaranteed_gpus": 2, "max_gpus": None},
    ]
    assert "A100-80GB=4:8, L4=2" in result.stdout and "parent:" in result.stdout

    assert corral("queues", "update", "vision", "--no-parent").exit_code == 0
    assert corral("queues", "update", "vision", "--type-quota", "L4=1").exit_code == 0
    assert corral("queues", "update", "vision", "--no-type-quotas").exit_code == 0
    assert corral.fake.bodies("PATCH", "/api/v1/queues/vision") == [
        {"parent": None},
        {"type_quotas": [{"gpu_type": "L4", "guaranteed_gpus": 1}]},  # no max: unlimited
        {"type_quotas": []},
    ]


@pytest.mark.parametrize("text", ["A100", "=4", "A100=x", "A100=4:y", "A100=", "A100=-1"])
def test_a_bad_type_quota_is_one_line(corral: Cli, text: str) -> None:
    result = corral("queues", "create", "vision", "--type-quota", text)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.splitlines()) == 1
    assert corral.fake.bodies("POST", "/api/v1/queues") == []


def test_queue_flags_that_contradict_each_other(corral: Cli) -> None:
    result = corral("queues", "update", "q", "--parent", "ml", "--no-parent")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: give --parent or --no-parent, not both\n",
    )
    result = corral("queues", "update", "q", "--type-quota", "L4=1", "--no-type-quotas")
    assert result.exit_code == 1 and "not both" in result.stderr


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
