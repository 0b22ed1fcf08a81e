"""Fixtures: a fake API, a client on it, and a CLI runner wired to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from scheduler.cli.config import CliContext
from scheduler.cli.main import cli
from scheduler.client import CorralClient

from .fake_api import TOKEN, FakeCorral

SERVER = "http://corral.test"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the user's CORRAL_* variables or a real local server's files."""
    monkeypatch.delenv("CORRAL_SERVER", raising=False)
    monkeypatch.delenv("CORRAL_TOKEN", raising=False)
    monkeypatch.setenv("CORRAL_DATA_DIR", str(tmp_path / "empty-data-dir"))


@pytest.fixture
def fake() -> FakeCorral:
    return FakeCorral()


@pytest.fixture
def client(fake: FakeCorral) -> Iterator[CorralClient]:
    with CorralClient(SERVER, TOKEN, transport=fake.transport, sleep=lambda _: None) as c:
        yield c


@dataclass
class Cli:
    """Runs ``corral ARGS`` in-process against the fake; records the sleeps asked for.

    ``on_sleep`` runs at each sleep (a test moves the fake's clock there);
    ``network=True`` leaves the fake out and really connects.
    """

    fake: FakeCorral
    sleeps: list[float] = field(default_factory=list)
    on_sleep: Callable[[], None] | None = None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()

    def __call__(
        self,
        *args: str,
        server: str | None = SERVER,
        token: str | None = TOKEN,
        env: Mapping[str, str | None] | None = None,
        network: bool = False,
    ) -> Result:
        transport = None if network else self.fake.transport
        obj = CliContext(server=server, token=token, transport=transport, sleep=self.sleep)
        return CliRunner().invoke(cli, list(args), obj=obj, env=env, catch_exceptions=False)


@pytest.fixture
def corral(fake: FakeCorral) -> Cli:
    return Cli(fake)
