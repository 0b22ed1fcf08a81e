"""A per-job Ray cluster's pieces: its addresses, ports, token, commands and rendezvous.

The only module of the agent that touches Ray (``ray`` is imported inside
``count_alive_nodes`` alone, so an agent without Ray installed runs plain attempts).
``agents.raysupervisor`` uses these pieces to run one node of a job's cluster.

Choices, each made once here:
- **Rendezvous on the shared checkpoint storage.** The head picks free ports when it
  starts and publishes ``{attempt_id, address, token}`` in
  ``CORRAL_CHECKPOINT_DIR/.ray-<attempt number>/head.json`` (mode 0600, written
  atomically); the other ranks wait for that file. Shared storage is already part of
  the contract (checkpoints live there), and a port derived from the attempt id
  could be taken on the head's host by anything else; a published one was free a
  moment ago. ``ended`` in the same directory says the head is done (the other ranks
  then leave); ``stop`` asks the workload to checkpoint and stop.
- **Auth: a token per attempt.** Ray 2.60's token auth stays on (``RAY_AUTH_MODE=token``)
  with a fresh 256-bit ``RAY_AUTH_TOKEN`` per attempt, passed to the Ray processes and
  the entrypoint in their env: never ``~/.ray/auth_token``, which every job of the
  user would share and overwrite. Anyone who can read the job's checkpoint dir can
  join its cluster, the same trust the checkpoints themselves need.
- **Ports:** the GCS, dashboard, Ray client and dashboard-agent ports (whose Ray
  defaults are fixed numbers that two clusters on one node would both want) are free
  ports picked at start; every other Ray port is left to the OS (0). Several jobs'
  clusters therefore share a node.
- **Node address:** the address this node uses to reach the head
  (``CORRAL_HEAD_HOST``). When that is loopback (every node of the job on this
  machine) the cluster uses ``127.0.0.2``: Ray replaces ``127.0.0.1`` with the
  machine's outward address, and traffic of a one-machine cluster stays on loopback.
- **Sizes:** ``--num-gpus`` = the attempt's GPUs (``CUDA_VISIBLE_DEVICES`` is already
  theirs), ``--num-cpus`` = the job's CPU request (or one per GPU, at least one), the
  object store 30 % of the job's memory request (``DEFAULT_OBJECT_STORE_MIB`` without
  one), ``--memory`` the rest of the request. ``--temp-dir`` a fresh directory per
  node and attempt, short enough for Ray's socket paths.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import json
import math
import os
import secrets
import shutil
import socket
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RENDEZVOUS_PREFIX = ".ray-"
HEAD_FILE = "head.json"
ENDED_FILE = "ended"
STOP_FILE = "stop"
LOOPBACK_NODE_IP = "127.0.0.2"
DEFAULT_OBJECT_STORE_MIB = 256
MIN_OBJECT_STORE_MIB = 80  # Ray refuses less than 75 MiB
OBJECT_STORE_SHARE = 0.3
TEMP_ROOT = "/tmp"  # Unix socket paths under --temp-dir must stay below 108 bytes
MIB = 1024 * 1024


@dataclass(frozen=True)
class NodePlan:
    """What one node of a job's cluster gets (from the attempt's launch)."""

    attempt_id: int
    rank: int  # 0: the head
    num_nodes: int
    num_gpus: int
    num_cpus: int
    object_store_mib: int
    memory_mib: int | None  # Ray's logical heap memory; None: Ray's own estimate

    @property
    def is_head(self) -> bool:
        return self.rank == 0


def node_plan(
    attempt_id: int,
    rank: int,
    num_nodes: int,
    gpu_indices: list[int],
    cpus: float | None,
    memory_mib: int | None,
) -> NodePlan:
    """Size one node: GPUs as allocated, CPUs and memory as the job requested."""
    num_cpus = math.ceil(cpus) if cpus else max(1, len(gpu_indices))
    if memory_mib:
        store = max(MIN_OBJECT_STORE_MIB, int(memory_mib * OBJECT_STORE_SHARE))
        heap: int | None = max(memory_mib - store, 1)
    else:
        store, heap = DEFAULT_OBJECT_STORE_MIB, None
    return NodePlan(attempt_id, rank, num_nodes, len(gpu_indices), num_cpus, store, heap)


@dataclass(frozen=True)
class HeadInfo:
    """What the head publishes for the other ranks (and the entrypoint)."""

    attempt_id: int
    address: str  # host:port of the GCS
    token: str  # RAY_AUTH_TOKEN of this cluster


def rendezvous_dir(checkpoint_dir: str, attempt_number: int) -> Path:
    return Path(checkpoint_dir) / f"{RENDEZVOUS_PREFIX}{attempt_number}"


def publish_head(rendezvous: Path, info: HeadInfo) -> None:
    """Write ``head.json`` atomically, readable by this user only (it holds the token)."""
    rendezvous.mkdir(parents=True, exist_ok=True)
    tmp = rendezvous / f".{HEAD_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(asdict(info)))
    os.replace(tmp, rendezvous / HEAD_FILE)


def read_head(rendezvous: Path, attempt_id: int) -> HeadInfo | None:
    """The published head of ``attempt_id``; None before it is (or for another attempt)."""
    try:
        data = json.loads((rendezvous / HEAD_FILE).read_text())
        info = HeadInfo(int(data["attempt_id"]), str(data["address"]), str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if info.attempt_id == attempt_id else None


def clear_rendezvous(rendezvous: Path) -> None:
    """Remove what an earlier start of this attempt's head left there."""
    for name in (HEAD_FILE, ENDED_FILE, STOP_FILE):
        with contextlib.suppress(FileNotFoundError):
            (rendezvous / name).unlink()


def mark_ended(rendezvous: Path, exit_code: int) -> None:
    """Tell the other ranks the head is done (and drop the token from the storage)."""
    rendezvous.mkdir(parents=True, exist_ok=True)
    (rendezvous / ENDED_FILE).write_text(json.dumps({"exit_code": exit_code}))
    with contextlib.suppress(FileNotFoundError):
        (rendezvous / HEAD_FILE).unlink()


def head_ended(rendezvous: Path) -> bool:
    return (rendezvous / ENDED_FILE).exists()


def node_ip(head_host: str) -> str:
    """This node's address towards the head (``LOOPBACK_NODE_IP`` on loopback)."""
    head_ip = socket.gethostbyname(head_host)
    if ipaddress.ip_address(head_ip).is_loopback:
        return LOOPBACK_NODE_IP
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((head_ip, 9))  # UDP: picks the route, sends nothing
        return str(probe.getsockname()[0])


def free_ports(count: int, host: str) -> list[int]:
    """``count`` distinct ports free on ``host`` just now (held open together while picked)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def new_token() -> str:
    return secrets.token_hex(32)


def auth_env(token: str) -> dict[str, str]:
    """The env that makes Ray (processes, drivers, clients) use this cluster's token."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}


def ray_env(base: dict[str, str], token: str, address: str | None = None) -> dict[str, str]:
    """``base`` with this cluster's auth, no usage stats, no drain, ``RAY_ADDRESS`` if given,
    and this Python's directory first on ``PATH``."""
    env = {k: v for k, v in base.items() if k != "RAY_ADDRESS"}
    # `python` in a job's command is the Python that runs Ray's workers (the agent's)
    python_dir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != python_dir:
        env["PATH"] = os.pathsep.join(p for p in (python_dir, env.get("PATH", "")) if p)
    env.update(
        {
            **auth_env(token),
            "RAY_USAGE_STATS_ENABLED": "0",
            # Ray is torn down after the workload is done: nothing is left to drain
            # (the drain exists for Ray Serve and would hold each stop up to 30 s).
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        }
    )
    if address:
        env["RAY_ADDRESS"] = address
    return env


def make_temp_dir(plan: NodePlan) -> Path:
    return Path(
        tempfile.mkdtemp(prefix=f"corral-ray-{plan.attempt_id}-{plan.rank}-", dir=TEMP_ROOT)
    )


def remove_temp_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def ray_executable() -> str:
    """The ``ray`` script of this Python (the workers run this Python too)."""
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def _common_args(plan: NodePlan, ip: str, temp_dir: Path, agent_port: int) -> list[str]:
    args = [
        "--block",
        f"--node-ip-address={ip}",
        f"--num-cpus={plan.num_cpus}",
        f"--num-gpus={plan.num_gpus}",
        f"--object-store-memory={plan.object_store_mib * MIB}",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={agent_port}",
        "--min-worker-port=0",
        "--max-worker-port=0",
        "--disable-usage-stats",
    ]
    if plan.memory_mib:
        args.append(f"--memory={plan.memory_mib * MIB}")
    return args


def head_command(plan: NodePlan, ip: str, temp_dir: Path) -> tuple[list[str], str]:
    """The ``ray start --head`` argv and the GCS address it will listen on."""
    gcs, dashboard, client, agent = free_ports(4, ip)
    argv = [
        ray_executable(),
        "start",
        "--head",
        f"--port={gcs}",
        "--include-dashboard=true",  # its state API is what Ray Train polls its actors with
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}",
        *_common_args(plan, ip, temp_dir, agent),
    ]
    return argv, f"{ip}:{gcs}"


def worker_command(plan: NodePlan, ip: str, temp_dir: Path, head_address: str) -> list[str]:
    """The ``ray start --address=HEAD`` argv of a worker rank."""
    (agent,) = free_ports(1, ip)
    return [
        ray_executable(),
        "start",
        f"--address={head_address}",
        *_common_args(plan, ip, temp_dir, agent),
    ]


def count_alive_nodes(address: str, timeout_s: float = 5.0) -> int:
    """How many nodes the GCS at ``address`` counts alive (``ray.nodes()``, without a
    driver); raises when it cannot be asked. Needs ``RAY_AUTH_TOKEN`` in this env."""
    raylet: Any = importlib.import_module("ray._raylet")  # no stub for GcsClient
    gcs_pb2: Any = importlib.import_module("ray.core.generated.gcs_pb2")
    alive = gcs_pb2.GcsNodeInfo.GcsNodeState.ALIVE
    client = raylet.GcsClient(address=address)
    nodes = client.get_all_node_info(timeout=timeout_s)
    return sum(1 for node in nodes.values() if node.state == alive)
