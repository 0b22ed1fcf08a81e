"""``corral db``: schema migrations of the server's database."""

from __future__ import annotations

from pathlib import Path

import click

from scheduler.cli.config import CliError, cli_context

url_option = click.option(
    "--database-url",
    envvar="CORRAL_DATABASE_URL",
    metavar="URL",
    help="SQLAlchemy URL; SQLite in the data dir if unset [env: CORRAL_DATABASE_URL]",
)
dir_option = click.option("--data-dir", metavar="DIR", help="the server's data dir")


def _database(data_dir: str | None, url: str | None):  # type: ignore[no-untyped-def]
    from scheduler.cli.server import database_url_for
    from scheduler.store.db import Database

    directory = Path(data_dir).expanduser() if data_dir else cli_context().corral_data_dir()
    return Database(database_url_for(directory.resolve(), url))


@click.group(
    epilog="""Examples:

\b
  corral db upgrade                  # before starting a new version of the server
  corral db current --database-url postgresql+psycopg://corral@db/corral
"""
)
def db() -> None:
    """Upgrade, inspect or roll back the database schema."""


@db.command()
@dir_option
@url_option
def upgrade(data_dir: str | None, database_url: str | None) -> None:
    """Bring the schema to the newest revision (the server also does it on start)."""
    from scheduler.store.db import current_revision
    from scheduler.store.db import upgrade as do_upgrade

    database = _database(data_dir, database_url)
    try:
        do_upgrade(database)
        click.echo(f"database at revision {current_revision(database)}")
    except Exception as exc:
        raise CliError(f"upgrade failed: {str(exc).splitlines()[0]}") from None
    finally:
        database.dispose()


@db.command()
@dir_option
@url_option
def current(data_dir: str | None, database_url: str | None) -> None:
    """Print the schema revision of the database and the newest one known."""
    from scheduler.store.db import current_revision, head_revision

    database = _database(data_dir, database_url)
    try:
        click.echo(f"current: {current_revision(database) or 'empty'}")
        click.echo(f"newest:  {head_revision(database)}")
    except Exception as exc:
        raise CliError(f"cannot read the database: {str(exc).splitlines()[0]}") from None
    finally:
        database.dispose()


@db.command()
@click.argument("revision")
@dir_option
@url_option
def downgrade(revision: str, data_dir: str | None, database_url: str | None) -> None:
    """Roll the schema back to REVISION (e.g. `base`); stop the server first."""
    from scheduler.store.db import current_revision
    from scheduler.store.db import downgrade as do_downgrade

    database = _database(data_dir, database_url)
    try:
        do_downgrade(database, revision)
        click.echo(f"database at revision {current_revision(database) or 'empty'}")
    except Exception as exc:
        raise CliError(f"downgrade failed: {str(exc).splitlines()[0]}") from None
    finally:
        database.dispose()
