"""``corral server``: the API, the scheduling cycle and the loops in one process."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from scheduler.cli.config import CliError, cli_context
from scheduler.settings import ServerSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def database_url_for(data_dir: Path, url: str | None) -> str:
    if url:
        return url
    from scheduler.store.db import sqlite_url

    return sqlite_url(data_dir)


@click.command(
    epilog="""Examples:

\b
  corral server                                   # SQLite under ~/.local/share/corral
  corral server --data-dir /var/lib/corral --host 0.0.0.0 --port 8470
  corral server --database-url postgresql+psycopg://corral@db/corral
"""
)
@click.option("--data-dir", metavar="DIR", help="database, admin token, checkpoints")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8470, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--database-url",
    envvar="CORRAL_DATABASE_URL",
    metavar="URL",
    help="SQLAlchemy URL; SQLite in the data dir if unset [env: CORRAL_DATABASE_URL]",
)
@click.option(
    "--checkpoint-dir",
    metavar="DIR",
    help="shared storage for CORRAL_CHECKPOINT_DIR (default: DATA_DIR/checkpoints)",
)
@click.option("--node-timeout-s", default=30.0, show_default=True, type=click.FloatRange(1))
@click.option("--cycle-interval-s", default=5.0, show_default=True, type=click.FloatRange(0.05))
@click.option("--retry-backoff-s", default=10.0, show_default=True, type=click.FloatRange(0))
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def server(
    data_dir: str | None,
    host: str,
    port: int,
    database_url: str | None,
    checkpoint_dir: str | None,
    node_timeout_s: float,
    cycle_interval_s: float,
    retry_backoff_s: float,
    log_level: str,
) -> None:
    """Run the corral server (API, scheduling cycle, loops) until SIGINT/SIGTERM.

    On first start it creates an admin token and saves it to DATA_DIR/admin.token
    (mode 600); the CLI on this machine finds the server and the token by itself.
    """
    from scheduler.api.serve import serve
    from scheduler.settings import RetrySettings

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    directory = Path(data_dir).expanduser() if data_dir else cli_context().corral_data_dir()
    settings = ServerSettings(
        data_dir=directory.resolve(),
        database_url=database_url_for(directory.resolve(), database_url),
        host=host,
        port=port,
        node_timeout_s=node_timeout_s,
        cycle_interval_s=cycle_interval_s,
        checkpoint_root=Path(checkpoint_dir).resolve() if checkpoint_dir else None,
        retry=RetrySettings(backoff_base_s=retry_backoff_s),
    )
    try:
        serve(settings)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy"):
            raise CliError(f"database error: {str(exc).splitlines()[0]}") from None
        raise
