"""Which server and token the CLI uses: flag > environment > the local server's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scheduler.cli.config import NO_SERVER, CliError, Target, resolve_target
from scheduler.paths import write_private

from .conftest import Cli
from .fake_api import TOKEN


def local_server(
    data_dir: Path, url: str = "http://127.0.0.1:8765", token: str = "local-tok"
) -> Path:
    write_private(data_dir / "server.json", json.dumps({"url": url, "pid": 1}))
    write_private(data_dir / "admin.token", token + "\n")
    return data_dir


def test_the_local_servers_files_need_no_flags(tmp_path: Path) -> None:
    data_dir = local_server(tmp_path)
    assert resolve_target(None, None, data_dir, environ={}) == Target(
        "http://127.0.0.1:8765", "local-tok"
    )


def test_the_data_dir_comes_from_the_environment_too(tmp_path: Path) -> None:
    local_server(tmp_path)
    env = {"CORRAL_DATA_DIR": str(tmp_path)}
    assert resolve_target(None, None, None, environ=env).token == "local-tok"


def test_the_environment_beats_the_files(tmp_path: Path) -> None:
    data_dir = local_server(tmp_path)
    env = {"CORRAL_SERVER": "http://env:1", "CORRAL_TOKEN": "env-tok"}
    assert resolve_target(None, None, data_dir, environ=env) == Target("http://env:1", "env-tok")


def test_flags_beat_the_environment(tmp_path: Path) -> None:
    data_dir = local_server(tmp_path)
    env = {"CORRAL_SERVER": "http://env:1", "CORRAL_TOKEN": "env-tok"}
    assert resolve_target("flag:2", "flag-tok", data_dir, environ=env) == Target(
        "http://flag:2", "flag-tok"
    )


def test_the_local_token_goes_only_to_the_local_server(tmp_path: Path) -> None:
    data_dir = local_server(tmp_path)
    assert resolve_target("http://127.0.0.1:8765/", None, data_dir, environ={}).token == "local-tok"
    assert resolve_target("http://elsewhere:8000", None, data_dir, environ={}).token is None


def test_nothing_configured_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(CliError) as caught:
        resolve_target(None, None, tmp_path, environ={})
    assert caught.value.message == NO_SERVER


def test_the_cli_finds_a_local_server_by_itself(corral: Cli, tmp_path: Path) -> None:
    local_server(tmp_path, url="http://corral.test", token=TOKEN)
    corral.fake.add_job()
    result = corral("jobs", server=None, token=None, env={"CORRAL_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    request = corral.fake.requests[-1]
    assert request.url.host == "corral.test"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_the_cli_data_dir_flag(corral: Cli, tmp_path: Path) -> None:
    local_server(tmp_path, url="http://corral.test", token=TOKEN)
    result = corral("--data-dir", str(tmp_path), "jobs", server=None, token=None)
    assert result.exit_code == 0, result.output


def test_cli_flags_and_env_are_used(corral: Cli, tmp_path: Path) -> None:
    local_server(tmp_path, url="http://other.test", token="wrong")
    env = {"CORRAL_DATA_DIR": str(tmp_path), "CORRAL_TOKEN": TOKEN}
    result = corral("--server", "http://corral.test", "jobs", server=None, token=None, env=env)
    assert result.exit_code == 0, result.output
    assert corral.fake.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    env = {"CORRAL_SERVER": "http://corral.test", "CORRAL_TOKEN": TOKEN}
    result = corral("jobs", server=None, token=None, env=env)
    assert result.exit_code == 0, result.output


def test_the_cli_without_any_server(corral: Cli) -> None:
    result = corral("jobs", server=None, token=None)
    assert result.exit_code == 1
    assert result.stderr == f"error: {NO_SERVER}\n"
