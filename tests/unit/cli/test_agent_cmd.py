"""``corral agent``: option resolution and the hand-off to the agent daemon (faked)."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scheduler.paths import write_private

from .conftest import Cli


@dataclass
class FakeAgentConfig:
    server: str
    token: str
    name: str
    gpus: str
    data_dir: Path
    long_poll_s: float
    ca: str | None = None


class FakeBackend:
    closed = False

    def close(self) -> None:
        FakeBackend.closed = True


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[FakeAgentConfig]:
    """Fake ``agents.gpu`` and ``agents.daemon``; what ``run_agent`` got is recorded."""
    configs: list[FakeAgentConfig] = []
    gpu = types.ModuleType("agents.gpu")
    daemon = types.ModuleType("agents.daemon")

    class GpuBackendError(RuntimeError):
        pass

    def select_backend(spec: str, name: str) -> FakeBackend:
        if spec == "nvml":
            raise GpuBackendError("NVML is unavailable: no library")
        if spec not in ("auto", "none") and not spec.startswith("sim:"):
            raise ValueError(f"bad GPU spec {spec!r}")
        return FakeBackend()

    def run_agent(config: FakeAgentConfig) -> int:
        configs.append(config)
        return 0

    gpu.__dict__.update(select_backend=select_backend, GpuBackendError=GpuBackendError)
    daemon.__dict__.update(AgentConfig=FakeAgentConfig, run_agent=run_agent)
    import agents

    monkeypatch.setitem(sys.modules, "agents.gpu", gpu)
    monkeypatch.setitem(sys.modules, "agents.daemon", daemon)
    monkeypatch.setattr(agents, "gpu", gpu, raising=False)
    monkeypatch.setattr(agents, "daemon", daemon, raising=False)
    return configs


def test_agent_hands_its_config_to_the_daemon(corral: Cli, ran: list[Any], tmp_path: Path) -> None:
    result = corral(
        "agent",
        "--server",
        "http://head:8000",
        "--token",
        "tok",
        "--name",
        "n1",
        "--gpus",
        "sim:4",
        "--data-dir",
        str(tmp_path / "a"),
        "--long-poll-s",
        "5",
    )
    assert result.exit_code == 0, result.output
    assert ran == [FakeAgentConfig("http://head:8000", "tok", "n1", "sim:4", tmp_path / "a", 5.0)]
    assert FakeBackend.closed


def test_agent_defaults_come_from_the_local_server(
    corral: Cli, ran: list[Any], tmp_path: Path
) -> None:
    write_private(tmp_path / "server.json", json.dumps({"url": "http://127.0.0.1:9"}))
    write_private(tmp_path / "admin.token", "local")
    result = corral("--data-dir", str(tmp_path), "agent", server=None, token=None)
    assert result.exit_code == 0, result.output
    (config,) = ran
    assert (config.server, config.token, config.gpus) == ("http://127.0.0.1:9", "local", "auto")
    assert config.data_dir == tmp_path / "agents" / config.name
    assert config.name and config.long_poll_s == 20.0


def test_the_ca_comes_from_the_flag_or_corral_ca(
    corral: Cli, ran: list[Any], tmp_path: Path
) -> None:
    flag, env = tmp_path / "flag.pem", tmp_path / "env.pem"
    flag.write_text("pem")
    env.write_text("pem")
    assert corral("agent", "--ca", str(flag), env={"CORRAL_CA": str(env)}).exit_code == 0
    assert corral("agent", env={"CORRAL_CA": str(env)}).exit_code == 0
    assert [config.ca for config in ran] == [str(flag), str(env)]
    missing = corral("agent", "--ca", str(tmp_path / "missing.pem"))
    assert missing.exit_code == 2 and "missing.pem" in missing.stderr


def test_a_bad_gpu_spec_is_one_line_and_exit_2(corral: Cli, ran: list[Any]) -> None:
    result = corral("agent", "--gpus", "lots")
    assert (result.exit_code, result.stderr) == (2, "error: --gpus: bad GPU spec 'lots'\n")
    result = corral("agent", "--gpus", "nvml")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: --gpus: NVML is unavailable: no library\n",
    )
    assert ran == []


def test_an_agent_without_a_token_stops_at_once(corral: Cli, ran: list[Any]) -> None:
    result = corral("agent", "--server", "http://head:8000", server=None, token=None)
    assert result.exit_code == 1
    assert result.stderr == "error: no token for the agent: pass --token or set CORRAL_TOKEN\n"


def test_the_real_agent_modules_reject_bad_input_in_one_line(corral: Cli) -> None:
    base = ("agent", "--server", "http://head:8000", "--token", "t")
    result = corral(*base, "--gpus", "lots")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --gpus: bad GPU spec 'lots'")
    result = corral(*base, "--gpus", "none", "--name", "bad name!")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: bad node name 'bad name!'")
    assert corral(*base, "--long-poll-s", "99").exit_code == 2
