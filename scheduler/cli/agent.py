"""``corral agent``: run this node's agent, which syncs with the server and runs attempts.

The agent packages (``agents.gpu``, ``agents.daemon``) are imported inside the command
only, so no other command pays for them.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import click

from scheduler.cli.config import (
    CliError,
    CliInputError,
    cli_context,
    normalize_url,
    resolve_target,
)
from scheduler.domain.sync import MAX_WAIT_S

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@click.command(
    epilog="""Examples:

\b
  corral agent                                   # a local server, this host's GPUs
  corral agent --gpus sim:4xA100-80GB --name sim-1
  corral agent --server http://head:8000 --token "$CORRAL_TOKEN" --gpus nvml
  corral agent --server http://head-1:8000,http://head-2:8000   # fail over between servers
  corral agent --server https://head:8443 --ca /etc/corral/ca.pem
""",
)
@click.option(
    "--server",
    "servers",
    metavar="URL",
    multiple=True,
    help="the server; several (repeated, or URL1,URL2) are tried in order, the agent "
    "moving to the next when one fails [env: CORRAL_SERVER]",
)
@click.option("--token", help="the token to present [env: CORRAL_TOKEN]")
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="a PEM CA bundle to verify an https server with [env: CORRAL_CA]",
)
@click.option("--name", help="this node's name [default: the hostname]")
@click.option(
    "--gpus",
    "gpu_spec",
    default="auto",
    show_default=True,
    metavar="SPEC",
    help="auto, nvml, none, sim:N or sim:NxTYPE",
)
@click.option(
    "--data-dir",
    "agent_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="the agent's own files [default: DATA_DIR/agents/NAME]",
)
@click.option(
    "--long-poll-s",
    type=click.FloatRange(min=0, max=MAX_WAIT_S),
    default=20.0,
    show_default=True,
    help="how long a sync may wait for news",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
def agent(
    *,
    servers: tuple[str, ...],
    token: str | None,
    ca: str | None,
    name: str | None,
    gpu_spec: str,
    agent_dir: Path | None,
    long_poll_s: float,
    log_level: str,
) -> None:
    """Run the agent of this node until it is stopped (SIGTERM or Ctrl-C)."""
    from agents import daemon, gpu

    context = cli_context()
    urls = _server_urls(",".join(servers) or context.server or context.environ.get("CORRAL_SERVER"))
    first = urls[0] if urls else None
    target = resolve_target(first, token or context.token, context.data_dir)
    if target.token is None:
        raise CliError("no token for the agent: pass --token or set CORRAL_TOKEN")
    node = name or socket.gethostname()
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        gpu.select_backend(gpu_spec, node).close()
    except ValueError as exc:
        raise CliInputError(f"--gpus: {exc}") from None
    except gpu.GpuBackendError as exc:
        raise CliError(f"--gpus: {exc}") from None
    try:
        config = daemon.AgentConfig(
            server=",".join([target.server, *urls[1:]]),
            token=target.token,
            name=node,
            gpus=gpu_spec,
            data_dir=agent_dir or context.corral_data_dir() / "agents" / node,
            long_poll_s=long_poll_s,
            ca=ca or context.ca or context.environ.get("CORRAL_CA") or None,
        )
    except ValueError as exc:
        raise CliInputError(str(exc)) from None
    sys.exit(daemon.run_agent(config))


def _server_urls(servers: str | None) -> list[str]:
    """``--server`` values (or ``CORRAL_SERVER``), split at commas and normalized."""
    urls = [part for part in (servers or "").split(",") if part.strip()]
    if servers and not urls:
        raise CliInputError(f"--server: no URL in {servers!r}")
    return [normalize_url(url) for url in urls]
