"""The pieces of a per-job Ray cluster that need no Ray: sizes, rendezvous, commands."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from agents import raycluster as rc
from agents.raysupervisor import parse_args, remove_leftovers, supervisor_argv
from scheduler.domain.sync import AttemptLaunch


@pytest.mark.parametrize(
    ("gpus", "cpus", "memory_mib", "expected"),
    [
        ([0, 1], None, None, (2, 2, rc.DEFAULT_OBJECT_STORE_MIB, None)),
        ([], None, None, (0, 1, rc.DEFAULT_OBJECT_STORE_MIB, None)),
        ([3], 2.5, 10240, (1, 3, 3072, 7168)),
        ([0], None, 100, (1, 1, rc.MIN_OBJECT_STORE_MIB, 20)),
    ],
)
def test_a_node_is_sized_from_the_attempt(
    gpus: list[int], cpus: float | None, memory_mib: int | None, expected: tuple[object, ...]
) -> None:
    plan = rc.node_plan(7, 1, 2, gpus, cpus, memory_mib)
    assert (plan.num_gpus, plan.num_cpus, plan.object_store_mib, plan.memory_mib) == expected
    assert not plan.is_head and rc.node_plan(7, 0, 2, gpus, cpus, memory_mib).is_head


def test_the_head_is_published_privately_and_only_for_its_attempt(tmp_path: Path) -> None:
    rendezvous = rc.rendezvous_dir(str(tmp_path), 3)
    assert rendezvous == tmp_path / ".ray-3"
    assert rc.read_head(rendezvous, 11) is None
    rc.publish_head(rendezvous, rc.HeadInfo(11, "127.0.0.2:6000", "secret"))
    assert rc.read_head(rendezvous, 11) == rc.HeadInfo(11, "127.0.0.2:6000", "secret")
    assert rc.read_head(rendezvous, 12) is None  # a stale file of another attempt
    assert stat.S_IMODE((rendezvous / rc.HEAD_FILE).stat().st_mode) == 0o600

    assert not rc.head_ended(rendezvous)
    rc.mark_ended(rendezvous, 0)
    assert rc.head_ended(rendezvous) and rc.read_head(rendezvous, 11) is None  # token gone
    rc.clear_rendezvous(rendezvous)
    assert not rc.head_ended(rendezvous)


def test_a_loopback_head_keeps_the_cluster_on_loopback() -> None:
    assert rc.node_ip("localhost") == rc.LOOPBACK_NODE_IP
    assert rc.node_ip("127.0.0.1") == rc.LOOPBACK_NODE_IP


def test_free_ports_are_distinct() -> None:
    ports = rc.free_ports(5, "127.0.0.1")
    assert len(set(ports)) == 5 and all(1024 <= p < 65536 for p in ports)


def test_the_env_carries_the_token_and_not_an_old_address() -> None:
    env = rc.ray_env({"RAY_ADDRESS": "old:1", "PATH": "/bin"}, "t0k", "127.0.0.2:9")
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == "t0k"
    assert env["RAY_ADDRESS"] == "127.0.0.2:9"
    assert env["PATH"] == f"{Path(sys.executable).parent}:/bin"
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"
    assert "RAY_ADDRESS" not in rc.ray_env({"RAY_ADDRESS": "old:1"}, "t0k")
    assert rc.new_token() != rc.new_token() and len(rc.new_token()) == 64


def test_the_ray_commands(tmp_path: Path) -> None:
    plan = rc.node_plan(5, 0, 2, [0, 1], 4, 2048)
    argv, address = rc.head_command(plan, "127.0.0.2", tmp_path)
    assert argv[1:3] == ["start", "--head"] and "--block" in argv
    assert address.startswith("127.0.0.2:") and f"--port={address.split(':')[1]}" in argv
    for flag in ("--num-gpus=2", "--num-cpus=4", f"--temp-dir={tmp_path}", "--min-worker-port=0"):
        assert flag in argv
    assert f"--object-store-memory={614 * rc.MIB}" in argv
    worker = rc.worker_command(
        rc.node_plan(5, 1, 2, [0], None, None), "127.0.0.2", tmp_path, address
    )
    assert f"--address={address}" in worker and "--head" not in worker


def test_the_temp_dir_is_short_and_per_node(tmp_path: Path) -> None:
    plan = rc.node_plan(123456, 1, 2, [0], None, None)
    first, second = rc.make_temp_dir(plan), rc.make_temp_dir(plan)
    try:
        assert first != second and len(str(first)) < 40
    finally:
        rc.remove_temp_dir(first)
        rc.remove_temp_dir(second)
    assert not first.exists()


def test_the_runner_starts_the_supervisor_with_the_launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launch = AttemptLaunch(
        attempt_id=9, job_id=4, attempt_number=2, argv=["python", "-m", "workloads.bert"],
        gpu_indices=[0, 3], grace_period_s=45, node_rank=1, num_nodes=2, ray=True,
        cpus=2.0, memory_mib=4096,
    )  # fmt: skip
    argv = supervisor_argv(launch, tmp_path / "ray.json")
    assert argv[1:3] == ["-m", "agents.raysupervisor"]
    assert argv[argv.index("--") + 1 :] == launch.argv
    monkeypatch.setenv("CORRAL_CHECKPOINT_DIR", str(tmp_path / "ck"))
    node, entrypoint = parse_args(argv[3:])
    assert entrypoint == launch.argv
    assert (node.plan.attempt_id, node.plan.rank, node.plan.num_nodes) == (9, 1, 2)
    assert (node.plan.num_gpus, node.plan.num_cpus, node.grace_s) == (2, 2, 45.0)
    assert node.rendezvous == tmp_path / "ck" / ".ray-2"
    assert node.state_file == tmp_path / "ray.json"


def test_the_runner_removes_a_killed_supervisors_temp_dir(tmp_path: Path) -> None:
    plan = rc.node_plan(8, 0, 1, [], None, None)
    temp_dir = rc.make_temp_dir(plan)
    state = tmp_path / "ray.json"
    state.write_text(json.dumps({"temp_dir": str(temp_dir), "pids": []}))
    remove_leftovers(state)
    assert not temp_dir.exists()
    remove_leftovers(tmp_path / "missing.json")  # nothing recorded: nothing to do
    state.write_text(json.dumps({"temp_dir": str(tmp_path), "pids": []}))
    remove_leftovers(state)  # not one of ours: kept
    assert tmp_path.exists()
