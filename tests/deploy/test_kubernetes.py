"""deploy/kubernetes: every manifest passes a schema check, offline.

Built-in kinds are validated strictly (unknown fields rejected) by
``kubernetes-validate``, which bundles the Kubernetes OpenAPI schemas, against the
oldest and the newest Kubernetes version we support. The ServiceMonitor is a CRD,
absent from those schemas: it is validated against ``schemas/servicemonitor.json``, a
focused schema of the fields we use. ``kustomization.yaml`` is checked structurally
(every manifest listed, every listed file present, the images it sets used).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "kubernetes"
VERSIONS = ("1.30.0", "1.37.0")
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): Path(__file__).parent
    / "schemas"
    / "servicemonitor.json"
}
MANIFESTS = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in all_documents() if d["kind"] == kind and d["metadata"]["name"] == name)


def validate(document: dict[str, Any], version: str) -> None:
    """Raise a ValidationError when ``document`` does not match its schema."""
    crd_schema = CRD_SCHEMAS.get((document["apiVersion"], document["kind"]))
    if crd_schema is not None:
        jsonschema.validate(document, json.loads(crd_schema.read_text()))
    else:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs, f"{path.name} has no resources"
    for document in docs:
        validate(document, version)


@pytest.mark.parametrize(
    ("kind", "name", "broken"),
    [
        ("DaemonSet", "corral-agent", lambda d: d["spec"]["template"]["spec"].update(hostPid=True)),
        ("ServiceMonitor", "corral-server", lambda d: d["spec"]["endpoints"][0].update(pth="/")),
    ],
)
def test_the_check_rejects_a_misspelt_field(kind: str, name: str, broken: Any) -> None:
    document = find(kind, name)
    broken(document)
    with pytest.raises(jsonschema.ValidationError):
        validate(document, VERSIONS[-1])


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    images = {image["name"] for image in kustomization["images"]}
    used = {
        container["image"].split(":")[0]
        for doc in all_documents()
        if doc["kind"] in ("Deployment", "DaemonSet")
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert images == used


def test_server_runs_two_replicas_on_postgres_with_health_probes() -> None:
    deployment = find("Deployment", "corral-server")
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["CORRAL_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "corral-database"
    assert container["args"][0] == "server"
    service = find("Service", "corral-server")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_agent_runs_on_gpu_nodes_with_the_nvidia_runtime() -> None:
    pod = find("DaemonSet", "corral-agent")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["hostPID"] is True
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (container,) = pod["containers"]
    assert container["args"][:3] == ["agent", "--name", "$(NODE_NAME)"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CORRAL_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "corral-agent-token"
    assert env["CORRAL_SERVER"]["value"].startswith("http://corral-server.")


def test_every_secret_reference_names_a_secret_and_key_we_ship() -> None:
    shipped = {
        (d["metadata"]["name"], key)
        for d in all_documents()
        if d["kind"] == "Secret"
        for key in d["stringData"]
    }
    referenced = {(ref["name"], ref["key"]) for doc in all_documents() for ref in _secret_refs(doc)}
    assert len(referenced) >= 3
    assert referenced <= shipped


def _secret_refs(node: Any) -> list[dict[str, str]]:
    """Every secretKeyRef and ServiceMonitor credentials selector under ``node``."""
    found: list[dict[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("secretKeyRef", "credentials"):
                found.append(value)
            else:
                found.extend(_secret_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_secret_refs(item))
    return found
