"""The guides' examples, run in order against a live local cluster, one per page.

A server and two agents (``node-a``, ``node-b``, two simulated A100-80GB GPUs each)
run as processes; the commands run through bash in a scratch directory, with
``CORRAL_DATA_DIR`` pointing at the server so ``corral`` needs no options, as the guide
says. The conventions for examples are in ``doctest_md.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scheduler.localcluster import LocalCluster
from tests.docs import doctest_md
from tests.docs.doctest_md import Block, Command

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("user-guide.md", "operator-guide.md")
BIN = Path(sys.executable).parent
SETTLE_S = 60.0  # how long a read-only command is polled until the state it shows is reached


@dataclass
class Shell:
    workdir: Path
    env: dict[str, str]
    page: str = ""

    def run(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            stdin=subprocess.DEVNULL,
            check=False,
        )


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    """A fresh cluster, and a scratch directory to run commands in."""
    data_dir = tmp_path / "cluster"
    # jobs run `python` and import corral's packages: the agents' PATH starts with this venv
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    local = LocalCluster(data_dir, server_args=("--retry-backoff-s", "0.5"), env={"PATH": path})
    with local:
        local.start_server()
        local.start_agent("node-a", "sim:2xA100-80GB")
        local.start_agent("node-b", "sim:2xA100-80GB")
        local.wait_for_nodes(["node-a", "node-b"])
        env = {k: v for k, v in os.environ.items() if k not in ("CORRAL_SERVER", "CORRAL_TOKEN")}
        env.update(PATH=path, CORRAL_DATA_DIR=str(data_dir / "server"))
        workdir = tmp_path / "work"
        workdir.mkdir()
        yield Shell(workdir, env)


def run_command(shell: Shell, command: Command) -> None:
    deadline = time.monotonic() + SETTLE_S
    while True:
        result = shell.run(command.text)
        output = result.stdout + result.stderr
        where = f"docs/{shell.page}:{command.line}: $ {command.text}"
        assert result.returncode == 0, f"{where}\nexit {result.returncode}\n{output}"
        missing = doctest_md.missing_output(command.expected, result.stdout)
        if missing is None:
            return
        if not command.read_only() or time.monotonic() > deadline:
            pytest.fail(f"{where}\nexpected a line matching: {missing}\ngot:\n{output}")
        time.sleep(0.5)


def run_block(shell: Shell, block: Block) -> None:
    if block.kind == "file":
        assert block.file_name is not None
        (shell.workdir / block.file_name).write_text(block.body)
    elif block.kind == "sh":
        result = shell.run(block.body)
        where = f"docs/{shell.page}:{block.line}: sh block"
        assert result.returncode == 0, f"{where}\n{result.stdout}{result.stderr}"
    elif block.kind == "console":
        for command in block.commands:
            run_command(shell, command)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_guide_examples_run(shell: Shell, page: str) -> None:
    shell.page = page
    runnable = [b for b in doctest_md.blocks(ROOT / "docs" / page) if b.kind != "shown"]
    assert sum(len(b.commands) for b in runnable) >= 5, f"{page} lost its examples"
    for block in runnable:
        run_block(shell, block)
