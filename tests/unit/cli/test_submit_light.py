"""``corral submit`` on its light path: what it imports, its HTTP client, arrays.

The submit path sends its spec with ``scheduler.cli.lightclient`` (standard library);
these tests run it against real loopback sockets (plain and TLS) and against the fake,
and pin that a plain submit process never imports pydantic, httpx, rich or the server.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from scheduler.cli.lightclient import LightClient, via_transport
from scheduler.client import CorralClient
from scheduler.client_errors import CorralError

from .conftest import SERVER, Cli
from .fake_api import TOKEN

HEAVY = ("pydantic", "pydantic_core", "httpx", "rich", "yaml", "sqlalchemy", "fastapi")
JOB = {"id": 7, "name": "true", "queue": "default", "status": "pending"}


@dataclass
class Canned:
    """What the loopback server answers to every request, and what it was sent."""

    status: int = 201
    body: bytes = json.dumps(JOB).encode()
    seen: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


def _handler(canned: Canned) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            content = self.rfile.read(length)
            canned.seen.append((self.command, self.path, dict(self.headers), content))
            self.send_response(canned.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(canned.body)))
            self.end_headers()
            self.wfile.write(canned.body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@dataclass
class Loopback:
    url: str
    canned: Canned


def _serve(canned: Canned, context: ssl.SSLContext | None = None) -> Iterator[Loopback]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(canned))
    scheme = "http"
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Loopback(f"{scheme}://127.0.0.1:{server.server_address[1]}", canned)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    yield from _serve(Canned())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- what a submit process imports ------------------------------------------------------

PROBE = """
import json, sys
from scheduler.cli.main import cli
try:
    cli.main({args!r}, prog_name="corral")
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def _submit_process(*args: str) -> tuple[list[str], dict[str, object]]:
    """Run ``corral ARGS`` in a fresh interpreter: its output lines, then its exit code
    and every module it imported."""
    code = PROBE.format(args=list(args))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    *lines, last = out.stdout.strip().splitlines()
    return lines, json.loads(last)


def _heavy(modules: object) -> list[str]:
    assert isinstance(modules, list)
    return [m for m in modules if m.split(".")[0] in HEAVY or m.startswith("scheduler.api")]


def test_a_plain_submit_imports_no_pydantic_httpx_rich_nor_the_server(loopback: Loopback) -> None:
    lines, seen = _submit_process(
        "--server", loopback.url, "--token", TOKEN, "submit", "-g", "1", "-e", "A=1", "--", "true"
    )
    assert seen["code"] == 0
    assert lines == ["submitted job 7 (true) to queue default"]
    assert _heavy(seen["modules"]) == []
    _, path, headers, content = loopback.canned.seen[0]
    assert path == "/api/v1/jobs"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(content) == {"command": ["true"], "resources": {"gpus": 1}, "env": {"A": "1"}}


def test_an_array_submit_imports_no_pydantic_either(loopback: Loopback) -> None:
    loopback.canned.body = json.dumps({"job_ids": [3, 4], "array_id": 3, "created": True}).encode()
    lines, seen = _submit_process(
        "--server", loopback.url, "--token", TOKEN, "submit", "--array", "0-1", "--", "true"
    )
    assert lines == ["submitted array 3 (2 jobs, 3..4) to queue default"]
    assert _heavy(seen["modules"]) == []
    assert json.loads(loopback.canned.seen[0][3])["indices"] == "0-1"


def test_a_refused_submit_still_imports_what_explains_it(loopback: Loopback) -> None:
    """The cheap path is for the common case: an error may load pydantic to word itself."""
    body = {"error": {"code": "unknown_queue", "message": "no queue 'q'", "field": "queue"}}
    loopback.canned.status, loopback.canned.body = 422, json.dumps(body).encode()
    out = subprocess.run(
        [sys.executable, "-m", "scheduler.cli.main", "--server", loopback.url, "submit",
         "-q", "q", "--", "true"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (out.returncode, out.stdout, out.stderr) == (1, "", "error: queue: no queue 'q'\n")


# -- the light client on the network ------------------------------------------------------


def test_a_refused_connection_is_the_cannot_reach_line(corral: Cli) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = corral("--server", url, "submit", "--", "true", network=True)
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach the corral server at {url} (is it running?)\n"


def test_a_server_that_does_not_answer_is_a_timeout() -> None:
    with socket.socket() as listening:  # the kernel accepts; nobody ever answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        client = LightClient(url, TOKEN, timeout_s=0.2)
        with pytest.raises(CorralError, match=r"did not answer within 0\.2s"):
            client.submit({"command": ["true"]})


def test_a_field_error_from_a_real_socket_is_one_line(loopback: Loopback, corral: Cli) -> None:
    body = {"error": {"code": "forbidden", "message": "not your queue", "field": "queue"}}
    loopback.canned.status, loopback.canned.body = 403, json.dumps(body).encode()
    result = corral("--server", loopback.url, "submit", "--", "true", network=True)
    assert (result.exit_code, result.stderr) == (1, "error: queue: not your queue\n")


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (502, b"<h1>Bad gateway</h1>", "HTTP 502: <h1>Bad gateway</h1>"),
        (401, b"", "HTTP 401: unauthorized: pass --token or set CORRAL_TOKEN"),
        (
            401,
            b'{"error": {"code": "unauthorized", "message": "unknown token"}}',
            "unknown token (pass --token or set CORRAL_TOKEN)",
        ),
        (200, b"[]", "unexpected reply from http://corral.test to POST /api/v1/jobs"),
    ],
)
def test_both_clients_word_a_bad_reply_alike(status: int, body: bytes, message: str) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, content=body))
    light = LightClient(SERVER, TOKEN, send=via_transport(transport))
    with pytest.raises(CorralError) as from_light:
        light.submit({"command": ["x"]})
    with (
        CorralClient(SERVER, TOKEN, transport=transport) as full,
        pytest.raises(CorralError) as from_full,
    ):
        full.health() if status == 200 else full.list_queues()
    assert str(from_light.value).startswith(message)
    if status != 200:  # the full client names its own path
        assert str(from_full.value) == str(from_light.value)


def test_a_url_that_is_not_http_is_an_error() -> None:
    with pytest.raises(CorralError, match="not an http:// or https:// URL"):
        LightClient("ftp://corral.test", TOKEN).submit({"command": ["x"]})


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    pytest.importorskip("cryptography")
    from tests.e2e.test_tls import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_loopback(pki: tuple[Path, Path, Path]) -> Iterator[Loopback]:
    _, cert, key = pki
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    yield from _serve(Canned(), context)


def test_https_with_the_ca_submits(tls_loopback: Loopback, pki: tuple[Path, ...]) -> None:
    job = LightClient(tls_loopback.url, TOKEN, ca=str(pki[0])).submit({"command": ["true"]})
    assert (job.id, job.name) == (7, "true")


def test_https_without_the_ca_names_the_certificate(tls_loopback: Loopback, corral: Cli) -> None:
    result = corral("--server", tls_loopback.url, "submit", "--", "true", network=True)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: the certificate of {tls_loopback.url} could not")
    assert "--ca FILE or CORRAL_CA" in result.stderr and result.stderr.count("\n") == 1


def test_the_ca_comes_from_the_environment(
    tls_loopback: Loopback, pki: tuple[Path, ...], corral: Cli
) -> None:
    result = corral(
        "--server", tls_loopback.url, "submit", "--", "true",
        env={"CORRAL_CA": str(pki[0])}, network=True,
    )  # fmt: skip
    assert (result.exit_code, result.stdout) == (0, "submitted job 7 (true) to queue default\n")


def test_an_unreadable_ca_file_is_one_line(loopback: Loopback, corral: Cli, tmp_path: Path) -> None:
    args = ("--server", loopback.url, "--ca", str(tmp_path / "none.pem"), "submit", "--", "x")
    result = corral(*args, network=True)
    assert result.exit_code == 1 and loopback.canned.seen == []
    assert result.stderr.startswith(f"error: cannot read the CA file {tmp_path / 'none.pem'}")


# -- arrays and files through the fake --------------------------------------------------


def test_an_array_prints_its_ids_and_queue(corral: Cli) -> None:
    result = corral("submit", "--array", "0-3", "-q", "default", "--", "x")
    assert (result.exit_code, result.stdout) == (
        0,
        "submitted array 1 (4 jobs, 1..4) to queue default\n",
    )
    body = corral.fake.bodies("POST", "/api/v1/jobs/array")[0]
    assert body == {"spec": {"queue": "default", "command": ["x"]}, "indices": "0-3"}


def test_an_array_as_json(corral: Cli) -> None:
    result = corral("submit", "--array", "1,3", "--json", "--", "x")
    assert json.loads(result.stdout) == {"job_ids": [1, 2], "array_id": 1, "created": True}


def test_a_bad_array_is_refused_in_the_servers_words_before_sending(corral: Cli) -> None:
    result = corral("submit", "--array", "5-1", "--", "x")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: indices: not an array range: '5-1'")
    assert corral.fake.jobs == {}


def test_a_bad_spec_in_an_array_is_explained_like_a_job(corral: Cli) -> None:
    result = corral("submit", "--array", "0-3", "-g", "-1", "--", "x")
    assert result.stderr == (
        "error: invalid job spec: resources.gpus: Input should be greater than or equal to 0\n"
    )
    assert corral.fake.jobs == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--array", "0-9%2"), "a concurrency cap (%N) is not supported"),
        (("--array", "0-9", "--wait"), "--wait does not apply to --array"),
    ],
)
def test_array_mistakes_are_caught_before_sending(
    corral: Cli, args: tuple[str, ...], message: str
) -> None:
    result = corral("submit", *args, "--", "x")
    assert result.exit_code == 1 and message in result.stderr
    assert corral.fake.requests == []


def test_a_file_is_validated_here_and_sent_as_the_model_dumps_it(
    corral: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("command: [x]\nresources: {memory_mib: 2G}\ntime_limit_s: 1h\n")
    assert corral("submit", "-f", str(path)).exit_code == 0
    body = corral.fake.bodies("POST", "/api/v1/jobs")[0]
    assert body == {"command": ["x"], "resources": {"memory_mib": 2048}, "time_limit_s": 3600}
    path.write_text("command: [x]\nname: 2001-02-03\n")  # a date: JSON cannot carry it
    result = corral("submit", "-f", str(path))
    assert result.exit_code == 1 and result.stderr.startswith("error: invalid job spec: name:")
    assert len(corral.fake.requests) == 1  # the second was never sent


def test_a_grace_period_is_sent_in_seconds(corral: Cli) -> None:
    assert corral("submit", "--grace-period", "2m", "--", "x").exit_code == 0
    assert corral.fake.bodies("POST", "/api/v1/jobs")[0]["grace_period_s"] == 120
