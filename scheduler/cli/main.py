"""The root ``corral`` group: global options, lazy subcommands, one error line.

Subcommands are named here as ``"module:attribute"`` and imported only when invoked,
so ``corral submit`` never imports the server's stack (fastapi, sqlalchemy, uvicorn),
and ``corral --help`` imports no subcommand at all (their one-line help is listed
here). A ``CorralError`` from the client becomes ``error: ...`` on stderr, exit 1.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from scheduler import __version__
from scheduler.cli.config import CliContext, CliError
from scheduler.client_errors import CorralError

# name -> ("module:attribute", one-line help), in the order ``corral --help`` lists them
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "submit": ("scheduler.cli.jobs:submit", "Submit a job."),
    "jobs": ("scheduler.cli.jobs:list_jobs", "List jobs, newest first."),
    "show": ("scheduler.cli.jobs:show", "Show a job: why it waits, its attempts and events."),
    "logs": ("scheduler.cli.jobs:logs", "Print (or follow) the output of a job."),
    "cancel": ("scheduler.cli.jobs:cancel", "Cancel jobs."),
    "queues": ("scheduler.cli.queues:queues", "List, show, create and update queues."),
    "nodes": ("scheduler.cli.nodes:nodes", "List and show nodes; drain and undrain them."),
    "top": ("scheduler.cli.top:top", "A live view of nodes, GPUs, running jobs and queues."),
    "usage": ("scheduler.cli.usage:usage", "GPU-hours per queue or user; CSV export."),
    "users": ("scheduler.cli.users:users", "Create, list, update and delete users (admins)."),
    "token": ("scheduler.cli.tokens:token", "Create, list and revoke API tokens (admins)."),
    "audit": ("scheduler.cli.audit:audit", "The log of state-changing calls (admins)."),
    "agent": ("scheduler.cli.agent:agent", "Run this node's agent."),
    "server": ("scheduler.cli.server:server", "Run the corral server."),
    "db": ("scheduler.cli.db:db", "Manage the server's database."),
    "demo": ("scheduler.cli.demo:demo", "Run a local demo cluster."),
    "simulate": ("scheduler.cli.simulate:simulate", "Replay a job trace through a policy."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are ``"module:attribute"`` strings, imported on use."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.lazy, *sorted(set(self.commands) - set(self.lazy))]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        return load_command(cmd_name, self.lazy[cmd_name][0])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table above, without importing any command."""
        rows = [(name, short) for name, (_, short) in self.lazy.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CorralError as exc:
            raise CliError(exc.message) from None


def load_command(name: str, target: str) -> click.Command:
    """Import ``"module:attribute"``; a module not in this installation is a clean error."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # a real bug or a missing dependency inside the module: show it
        return _unavailable(name, module_name)
    command = getattr(module, attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


def _unavailable(name: str, module_name: str) -> click.Command:
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def unavailable(args: tuple[str, ...]) -> None:
        raise CliError(f"`corral {name}` is not available: module {module_name} is missing")

    return unavailable


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""Examples:

\b
  corral server &                      # a local server; the CLI finds it by itself
  corral submit -g 1 -- python train.py
  corral --server http://head:8000 --token "$TOKEN" jobs --status running
""",
)
@click.option("--server", metavar="URL", help="the corral server [env: CORRAL_SERVER]")
@click.option("--token", help="the API token [env: CORRAL_TOKEN]")
@click.option(
    "--data-dir",
    metavar="DIR",
    help="a local server's data dir, to find its URL and token [env: CORRAL_DATA_DIR]",
)
@click.option(
    "--ca",
    metavar="FILE",
    help="a CA bundle (PEM) to verify an https server with [env: CORRAL_CA]",
)
@click.version_option(__version__, "--version", prog_name="corral")
@click.pass_context
def cli(
    ctx: click.Context,
    server: str | None,
    token: str | None,
    data_dir: str | None,
    ca: str | None,
) -> None:
    """corral: a data-center GPU job scheduler.

    With a local `corral server` running, no option is needed: its URL and token
    are read from its data dir.
    """
    state = ctx.ensure_object(CliContext)
    state.server = server or state.server
    state.token = token or state.token
    state.data_dir = data_dir or state.data_dir
    state.ca = ca or state.ca


def main() -> None:
    """The ``corral`` console script."""
    cli(prog_name="corral")


if __name__ == "__main__":
    main()
