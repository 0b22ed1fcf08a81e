"""deploy/compose and deploy/docker, checked without a Docker engine.

The compose files are validated against the Compose Specification's JSON schema
(vendored in ``schemas/``, see its README), each alone and merged as ``docker compose
-f a -f b`` merges them (mappings merged, other values replaced). The Dockerfiles
are linted for what the deployment relies on: a base image, a non-root user, a
health check on ``/healthz`` and ``corral`` as the entrypoint.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
DOCKER_DIR = ROOT / "deploy" / "docker"
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())
BASE = COMPOSE_DIR / "docker-compose.yml"
GPU = COMPOSE_DIR / "docker-compose.gpu.yml"


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict)
    return document


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file: mappings merge key by key, the rest is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base.get(key), value) if key in base else value
        return merged
    return override


def agent_command(service: dict[str, Any]) -> list[str]:
    """The ``corral agent`` argv an agent service runs (through ``sh -c``)."""
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = service["command"]
    words = shlex.split(script.replace("$$", "$"))
    assert words[:3] == ["exec", "corral", "agent"], script
    return words[1:]


@pytest.mark.parametrize("path", [BASE, GPU], ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec(path: Path) -> None:
    assert schema_errors(load(path)) == []


def test_merged_gpu_variant_matches_the_compose_spec() -> None:
    assert schema_errors(merge(load(BASE), load(GPU))) == []


def test_the_schema_rejects_a_misspelt_field() -> None:
    broken = load(BASE)
    broken["services"]["server"]["healtcheck"] = broken["services"]["server"].pop("healthcheck")
    assert any("healtcheck" in error for error in schema_errors(broken))


def test_base_runs_postgres_a_server_and_two_simulated_agents() -> None:
    services = load(BASE)["services"]
    assert set(services) == {"db", "server", "agent-1", "agent-2"}
    server = services["server"]
    assert server["environment"]["CORRAL_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert server["depends_on"]["db"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(server["healthcheck"]["test"])
    names = set()
    for name in ("agent-1", "agent-2"):
        argv = agent_command(services[name])
        assert argv[argv.index("--gpus") + 1].startswith("sim:")
        assert services[name]["depends_on"]["server"]["condition"] == "service_healthy"
        names.add(services[name]["hostname"])
    assert len(names) == 2, "each agent needs its own node name"


def test_gpu_variant_reserves_nvidia_gpus_for_one_nvml_agent() -> None:
    services = merge(load(BASE), load(GPU))["services"]
    agent = services["agent-1"]
    argv = agent_command(agent)
    assert argv[argv.index("--gpus") + 1] == "nvml"
    (device,) = agent["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert services["agent-2"]["profiles"], "a second agent must not report the same GPUs"


def test_build_contexts_and_dockerfiles_exist() -> None:
    for service in load(BASE)["services"].values():
        build = service.get("build")
        if build is None:
            continue
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT
        assert (context / build["dockerfile"]).is_file()


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    rows = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


@pytest.mark.parametrize("name", ["Dockerfile.server", "Dockerfile.agent"])
def test_dockerfile_lint(name: str) -> None:
    rows = instructions(DOCKER_DIR / name)
    kinds = [kind for kind, _ in rows]
    args = dict(reversed(rows))  # the first of each instruction
    last = {kind: arg for kind, arg in rows}  # the last of each instruction
    assert kinds[0] == "FROM" or kinds[:2] == ["ARG", "FROM"]
    assert ":" in args["FROM"] and not args["FROM"].endswith(":latest"), "pin the base image"
    assert last["USER"] not in ("root", "0"), "the image must not run as root"
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")
    assert "/healthz" in last["HEALTHCHECK"]
    assert json.loads(last["ENTRYPOINT"]) == ["corral"]
    for kind, arg in rows:
        if kind == "COPY":
            for source in arg.split()[:-1]:
                assert (ROOT / source).exists(), f"{name}: COPY {source}: not in the repository"


def test_agent_image_is_cuda_based_and_gets_nvml_from_the_driver() -> None:
    rows = instructions(DOCKER_DIR / "Dockerfile.agent")
    assert next(arg for kind, arg in rows if kind == "FROM").startswith("nvidia/cuda:")
    env = " ".join(arg for kind, arg in rows if kind == "ENV")
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env  # utility: NVML


@pytest.mark.parametrize("name", ["Dockerfile.server", "Dockerfile.agent"])
def test_build_context_sends_only_the_sources(name: str) -> None:
    ignore = (DOCKER_DIR / f"{name}.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") + 1 :][:1] == ["!pyproject.toml"]
