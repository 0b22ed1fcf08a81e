"""Which server the CLI talks to and with which token, and the CLI's error type.

Resolution, first found wins: the ``--server``/``--token`` flags, then
``CORRAL_SERVER``/``CORRAL_TOKEN``, then the files a local ``corral server`` wrote in
its data dir (``server.json``'s URL and ``admin.token``), so a local user needs no
flags at all. The local admin token is only ever sent to the local server's own URL:
a ``--server`` pointing elsewhere needs its own ``--token``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from scheduler.paths import default_data_dir, read_admin_token, read_server_info

if TYPE_CHECKING:
    import httpx

    from scheduler.client import CorralClient

NO_SERVER = (
    "no corral server configured: pass --server or set CORRAL_SERVER, "
    "or start one with `corral server`"
)


class CliError(click.ClickException):
    """A user-facing failure: printed as one ``error: ...`` line on stderr."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class CliInputError(CliError):
    """A bad value given on the command line that click could not catch: exit 2."""

    exit_code = 2


@dataclass(frozen=True)
class Target:
    """A resolved server URL and the token to present to it (None: no token found)."""

    server: str
    token: str | None


def normalize_url(url: str) -> str:
    """``host:8000`` -> ``http://host:8000``; no trailing slash."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def resolve_data_dir(flag: str | Path | None, environ: Mapping[str, str]) -> Path:
    """``--data-dir``, else ``CORRAL_DATA_DIR``, else the platform default."""
    if flag:
        return Path(flag).expanduser()
    if environ.get("CORRAL_DATA_DIR"):
        return Path(environ["CORRAL_DATA_DIR"]).expanduser()
    return default_data_dir()


def resolve_target(
    server: str | None,
    token: str | None,
    data_dir: str | Path | None,
    environ: Mapping[str, str] | None = None,
) -> Target:
    """Flag > environment > the local server's files; ``CliError`` if no server is found."""
    env = os.environ if environ is None else environ
    server = server or env.get("CORRAL_SERVER") or None
    token = token or env.get("CORRAL_TOKEN") or None
    directory = resolve_data_dir(data_dir, env)
    info = read_server_info(directory) or {}
    local_url = normalize_url(str(info["url"])) if info.get("url") else None
    url = normalize_url(server) if server else local_url
    if url is None:
        raise CliError(NO_SERVER)
    if token is None and url == local_url:
        token = read_admin_token(directory)
    return Target(server=url, token=token)


@dataclass
class CliContext:
    """The root options, kept in ``ctx.obj``; tests preset ``transport`` and ``sleep``."""

    server: str | None = None
    token: str | None = None
    data_dir: str | None = None
    ca: str | None = None  # a CA bundle to verify an https server with
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def target(self) -> Target:
        return resolve_target(self.server, self.token, self.data_dir, self.environ)

    def corral_data_dir(self) -> Path:
        return resolve_data_dir(self.data_dir, self.environ)

    def ca_file(self) -> str | None:
        """The CA bundle to verify an https server with: ``--ca``, then ``CORRAL_CA``."""
        return self.ca or self.environ.get("CORRAL_CA") or None

    def client(self) -> CorralClient:
        from scheduler.client import CorralClient

        target = self.target()
        return CorralClient(
            target.server,
            target.token,
            transport=self.transport,
            sleep=self.sleep,
            ca=self.ca_file(),
        )


def cli_context() -> CliContext:
    """The ``CliContext`` of the running command (a default one outside the root group)."""
    ctx = click.get_current_context()
    obj = ctx.find_object(CliContext)
    if obj is None:
        obj = ctx.ensure_object(CliContext)
    return obj
