"""A per-job Ray cluster of two nodes on this machine, run by two supervisors.

Each supervisor is started as the runner starts it (leading its own session) for one
rank of the same attempt. The head forms the gang, runs the entrypoint with
``RAY_ADDRESS`` and the cluster's token; a SIGTERM to both (as the agents send on a
stop) is relayed to the workload through the stop file while Ray stays up, then both
nodes are torn down: no Ray process they started is left, nor their temp dirs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

# Checks the cluster, then waits for the stop file, uses Ray once more and exits 143.
ENTRYPOINT = textwrap.dedent(
    """
    import os, pathlib, signal, sys, time
    import ray
    ray.init()
    signal.signal(signal.SIGTERM, lambda *_: print("driver got SIGTERM", flush=True))
    nodes = [n for n in ray.nodes() if n["Alive"]]
    print("nodes", len(nodes), "gpus", ray.cluster_resources().get("GPU"), flush=True)
    print("token", os.environ["RAY_AUTH_MODE"], len(os.environ["RAY_AUTH_TOKEN"]), flush=True)
    pathlib.Path(sys.argv[1]).write_text("ready")
    stop = pathlib.Path(os.environ["CORRAL_STOP_FILE"])
    while not stop.exists():
        time.sleep(0.1)
    @ray.remote(num_gpus=1)
    def where():
        return ray.get_runtime_context().get_node_id()
    used = set(ray.get([where.remote() for _ in range(2)]))
    print("nodes used after the stop", len(used), flush=True)
    sys.exit(143)
    """
)


def start_rank(tmp_path: Path, rank: int, ready: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "CORRAL_JOB_ID": "1",
        "CORRAL_ATTEMPT": "1",
        "CORRAL_CHECKPOINT_DIR": str(tmp_path / "ck"),
        "CORRAL_HEAD_HOST": "localhost",
        "CORRAL_NODE_RANK": str(rank),
        "CORRAL_NUM_NODES": "2",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    argv = [
        sys.executable, "-m", "agents.raysupervisor", "--attempt-id=41", "--attempt-number=1",
        f"--rank={rank}", "--nodes=2", "--gpus=0", "--grace-s=30",
        f"--state-file={tmp_path / f'ray-{rank}.json'}",
        "--", sys.executable, "-c", ENTRYPOINT, str(ready),
    ]  # fmt: skip
    log = open(tmp_path / f"rank-{rank}.log", "w")  # noqa: SIM115 (the child writes it)
    return subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def alive(pid: int, start_ticks: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == start_ticks


def test_two_supervisors_form_a_cluster_relay_a_stop_and_leave_nothing(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    ranks = [start_rank(tmp_path, rank, ready) for rank in (0, 1)]
    try:
        deadline = time.monotonic() + 150
        while not ready.exists():
            assert time.monotonic() < deadline, (tmp_path / "rank-0.log").read_text()[-3000:]
            assert all(p.poll() is None for p in ranks), (tmp_path / "rank-0.log").read_text()
            time.sleep(0.2)
        for process in ranks:  # the agents' stop: SIGTERM to each supervisor
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process in ranks]
    finally:
        for process in ranks:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    head_log = (tmp_path / "rank-0.log").read_text()
    assert codes == [143, 143], head_log[-3000:]
    assert "nodes 2 gpus 2.0" in head_log
    assert "token token 64" in head_log
    assert "nodes used after the stop 2" in head_log  # Ray outlived the stop until then
    assert "driver got SIGTERM" in head_log
    assert (tmp_path / "ck" / ".ray-1" / "ended").exists()
    assert not (tmp_path / "ck" / ".ray-1" / "head.json").exists()  # the token is gone
    for rank in (0, 1):
        state = json.loads((tmp_path / f"ray-{rank}.json").read_text())
        assert state["pids"], f"rank {rank} recorded no Ray process"
        assert not [p for p in state["pids"] if alive(p["pid"], p["start_ticks"])]
        assert not Path(state["temp_dir"]).exists()
