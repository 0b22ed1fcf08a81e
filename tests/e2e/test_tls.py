"""End to end over TLS: a real ``corral server --tls-cert --tls-key`` on loopback.

A private CA signs a certificate for 127.0.0.1 and localhost; the agent verifies the
server with ``--ca`` and runs a job the CLI submitted with ``--ca``. Without the CA the
CLI stops with one ``error:`` line about the certificate, and a plain-http client gets
no answer; an agent without the CA never registers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scheduler.localcluster import LocalCluster, corral_argv
from tests.e2e.conftest import Cli, cli_for
from tests.e2e.test_spine import wait_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)


def make_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signs for 127.0.0.1/localhost: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("corral test CA"))
        .issuer_name(_name("corral test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
    )
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return ca_path, cert_path, key_path


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A server on https and one agent that verifies it with the CA."""
    data_dir = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_pki(data_dir)
    local = LocalCluster(
        data_dir,
        server_args=("--host", "127.0.0.1", "--tls-cert", str(cert), "--tls-key", str(key)),
        ca=str(ca),
    )
    with local:
        local.start_server()
        local.start_agent("node-tls", "sim:1xA100-80GB")
        local.wait_for_nodes(["node-tls"])
        yield local


def test_the_server_serves_https_and_the_agent_verifies_it(tls_cluster: LocalCluster) -> None:
    assert tls_cluster.url.startswith("https://127.0.0.1:")
    with tls_cluster.client() as client:
        node = client.get_node("node-tls")
    assert node.state == "up"


def test_a_job_submitted_with_the_ca_runs_and_succeeds(
    tls_cluster: LocalCluster, tmp_path: Path
) -> None:
    cli = cli_for(tls_cluster, tmp_path)
    out = cli.run("--ca", str(tls_cluster.ca), "submit", "--json", "--", "echo over-tls")
    assert out.returncode == 0, out.stderr
    job_id = int(json.loads(out.stdout)["id"])
    verified = Cli({**cli.env, "CORRAL_CA": str(tls_cluster.ca)})  # the env var works too
    job = wait_status(verified, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    assert "over-tls" in verified.run("logs", str(job_id)).stdout


def test_the_cli_without_the_ca_says_the_certificate_is_not_trusted(
    tls_cluster: LocalCluster, tmp_path: Path
) -> None:
    cli = cli_for(tls_cluster, tmp_path)
    cli.env.pop("CORRAL_CA", None)
    out = cli.run("jobs")
    assert out.returncode != 0
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "certificate" in out.stderr and "--ca" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_plain_http_client_gets_no_answer(tls_cluster: LocalCluster) -> None:
    plain = tls_cluster.url.replace("https://", "http://", 1)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/api/v1/jobs", timeout=10.0)


def test_an_agent_without_the_ca_does_not_trust_the_server(tls_cluster: LocalCluster) -> None:
    argv = corral_argv(
        "agent", "--server", tls_cluster.url, "--token", tls_cluster.token,
        "--name", "node-untrusting", "--gpus", "sim:1xA100-80GB",
        "--data-dir", str(tls_cluster.data_dir / "agents" / "node-untrusting"),
    )  # fmt: skip
    proc = tls_cluster.agents["node-untrusting"] = tls_cluster._spawn("agent-untrusting", argv)
    try:
        wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in proc.tail(), 60, "a refused sync")
        with tls_cluster.client() as client:
            names = {node.name for node in client.list_nodes().nodes}
        assert "node-untrusting" not in names and proc.alive()
    finally:
        proc.stop()
