"""A real local cluster for end-to-end tests: a server and two agents, each a process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scheduler.localcluster import LocalCluster, corral_argv

NODE_TIMEOUT_S = "3"


@dataclass
class Cli:
    """Runs ``corral ...`` as a user would, against the test cluster."""

    env: dict[str, str]

    def run(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            corral_argv(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )


def start_cluster(data_dir: Path) -> LocalCluster:
    """A server (short node timeout, quick retries) and agents node-a, node-b (2 GPUs each)."""
    local = LocalCluster(
        data_dir,
        server_args=("--node-timeout-s", NODE_TIMEOUT_S, "--retry-backoff-s", "0.5"),
    )
    try:
        local.start_server()
        local.start_agent("node-a", "sim:2xA100-80GB")
        local.start_agent("node-b", "sim:2xA100-80GB")
        local.wait_for_nodes(["node-a", "node-b"])
    except BaseException:
        local.stop()
        raise
    return local


def cli_for(local: LocalCluster, data_dir: Path) -> Cli:
    env = {
        **os.environ,
        "CORRAL_SERVER": local.url,
        "CORRAL_TOKEN": local.token,
        "CORRAL_DATA_DIR": str(data_dir / "no-local-server"),
    }
    return Cli(env)


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster for a module's tests that leave it as they found it."""
    local = start_cluster(tmp_path_factory.mktemp("cluster"))
    with local:
        yield local


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster of this test's own, for tests that break it (kill an agent)."""
    local = start_cluster(tmp_path)
    with local:
        yield local
