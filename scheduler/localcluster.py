"""A corral cluster on this machine: one server and N agents, each a real process.

Used by ``corral demo``, the end-to-end tests and the benchmarks. Every process is
started here with its own log file and stopped here by its PID (SIGTERM, then
SIGKILL after a grace period); nothing else on the host is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from scheduler.client import CorralClient, CorralError
from scheduler.paths import read_admin_token, read_server_info


class ClusterError(RuntimeError):
    """The local cluster could not start (the message says which process and why)."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost machine would end it."""
        self.stop(grace_s=0.1, sig=signal.SIGKILL)


def corral_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "scheduler.cli.main", *args]


@dataclass
class LocalCluster:
    data_dir: Path
    server_args: tuple[str, ...] = ()  # e.g. ("--tls-cert", CERT, "--tls-key", KEY)
    env: dict[str, str] = field(default_factory=dict)
    ca: str | None = None  # a PEM CA bundle: the client and every agent verify https with it
    server: Proc | None = None
    agents: dict[str, Proc] = field(default_factory=dict)
    url: str = ""
    token: str = ""

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        log_path = self.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        return Proc(name, popen, log_path)

    def start_server(self, timeout_s: float = 60.0, port: int = 0) -> None:
        """Start the server (on a free loopback port unless given) and wait until it answers."""
        server_dir = self.data_dir / "server"
        info_path = server_dir / "server.json"
        info_path.unlink(missing_ok=True)
        argv = corral_argv(
            "server", "--data-dir", str(server_dir), "--port", str(port), *self.server_args
        )
        self.server = self._spawn("server", argv)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = read_server_info(server_dir)
            if info and info.get("pid") == self.server.popen.pid:
                self.url = str(info["url"])
                self.token = read_admin_token(server_dir) or ""
                if self._healthy():
                    return
            if not self.server.alive():
                raise ClusterError(f"the server exited:\n{self.server.tail()}")
            time.sleep(0.05)
        raise ClusterError(f"the server did not answer within {timeout_s:.0f}s")

    def restart_server(self, *, crash: bool = False, down_s: float = 0.0) -> None:
        """Stop the server (SIGKILL when ``crash``) and start it again on the same port."""
        assert self.server is not None, "start_server first"
        if crash:
            self.server.kill()
        else:
            self.server.stop()
        time.sleep(down_s)
        self.start_server(port=int(self.url.rsplit(":", 1)[1]))

    def _healthy(self) -> bool:
        try:
            with self.client(timeout_s=2.0) as client:
                client.health()
            return True
        except CorralError:
            return False

    def client(self, timeout_s: float = 30.0) -> CorralClient:
        return CorralClient(self.url, self.token, timeout_s, ca=self.ca)

    def start_agent(self, name: str, gpus: str, *extra: str) -> Proc:
        argv = corral_argv(
            "agent", "--server", self.url, "--token", self.token, "--name", name,
            "--gpus", gpus, "--data-dir", str(self.data_dir / "agents" / name), *extra,
        )  # fmt: skip
        if self.ca is not None:
            argv += ["--ca", self.ca]
        proc = self.agents[name] = self._spawn(f"agent-{name}", argv)
        return proc

    def wait_for_nodes(self, names: list[str], timeout_s: float = 60.0) -> None:
        """Until every named node is registered and up."""
        deadline = time.monotonic() + timeout_s
        with self.client() as client:
            while time.monotonic() < deadline:
                up = {n.name for n in client.list_nodes().nodes if n.state == "up"}
                if set(names) <= up:
                    return
                for name in names:
                    proc = self.agents.get(name)
                    if proc is not None and not proc.alive():
                        raise ClusterError(f"agent {name} exited:\n{proc.tail()}")
                time.sleep(0.1)
        raise ClusterError(f"nodes {names} did not come up within {timeout_s:.0f}s")

    def stop(self) -> None:
        """Agents first (they stop their attempts), then the server."""
        for proc in self.agents.values():
            proc.stop()
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
