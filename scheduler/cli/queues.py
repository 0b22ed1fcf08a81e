"""``corral queues``: list (the default), show, create and update fair-share queues."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from scheduler.cli import render
from scheduler.cli.config import CliError, cli_context
from scheduler.cli.spec_input import format_validation_error
from scheduler.domain.spec import QueuePatch, QueueSpec
from scheduler.domain.views import QueueInfo, QueueList

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print JSON")
UNLIMITED = "unlimited"


def queue_options(create: bool) -> Any:
    """The four queue settings, shared by ``create`` and ``update``."""

    def decorate(command: Any) -> Any:
        suffix = " [default: 1]" if create else ""
        options = [
            click.option("--weight", type=float, help=f"fair-share weight{suffix}"),
            click.option("--guaranteed-gpus", type=int, help="GPUs it always gets back"),
            click.option(
                "--borrow-limit-gpus", type=int, help="most GPUs it may borrow [unlimited]"
            ),
            click.option("--max-gpus", type=int, help="cap on the GPUs it holds [unlimited]"),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@click.group(
    invoke_without_command=True,
    epilog="""Examples:

\b
  corral queues
  corral queues create research --weight 2 --guaranteed-gpus 8
  corral queues update research --max-gpus 16
""",
)
@JSON_OPTION
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Fair-share queues (teams or projects); lists them with no subcommand."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_queues, as_json=as_json)


@queues.command(
    "list",
    epilog="""Example:

\b
  corral queues list --json
""",
)
@JSON_OPTION
def list_queues(as_json: bool) -> None:
    """List the queues with what they hold and what waits."""
    with cli_context().client() as client:
        found = client.list_queues()
    if as_json:
        render.echo_json(found)
    else:
        print_queues(found)


@queues.command(
    epilog="""Example:

\b
  corral queues show default
""",
)
@click.argument("name")
@JSON_OPTION
def show(name: str, as_json: bool) -> None:
    """Show one queue."""
    with cli_context().client() as client:
        queue = client.get_queue(name)
    show_queue(queue, as_json)


@queues.command(
    epilog="""Example:

\b
  corral queues create research --weight 2 --guaranteed-gpus 8 --max-gpus 32
""",
)
@click.argument("name")
@queue_options(create=True)
@JSON_OPTION
def create(name: str, as_json: bool, **settings: int | float | None) -> None:
    """Create a queue."""
    given = {key: value for key, value in settings.items() if value is not None}
    try:
        spec = QueueSpec.model_validate({"name": name, **given})
    except ValidationError as exc:
        raise CliError(f"invalid queue spec: {format_validation_error(exc)}") from None
    with cli_context().client() as client:
        queue = client.create_queue(spec)
    show_queue(queue, as_json)


@queues.command(
    epilog="""Example:

\b
  corral queues update research --weight 3 --max-gpus 16
""",
)
@click.argument("name")
@queue_options(create=False)
@JSON_OPTION
def update(name: str, as_json: bool, **settings: int | float | None) -> None:
    """Change some settings of a queue; the others keep their value."""
    given = {key: value for key, value in settings.items() if value is not None}
    if not given:
        raise CliError(
            "nothing to update: give --weight, --guaranteed-gpus, --borrow-limit-gpus or --max-gpus"
        )
    try:
        patch = QueuePatch.model_validate(given)
    except ValidationError as exc:
        raise CliError(f"invalid queue update: {format_validation_error(exc)}") from None
    with cli_context().client() as client:
        queue = client.update_queue(name, patch)
    show_queue(queue, as_json)


def show_queue(queue: QueueInfo, as_json: bool) -> None:
    if as_json:
        render.echo_json(queue)
        return
    render.print_fields(
        [
            ("queue", queue.name),
            ("weight", f"{queue.weight:g}"),
            ("guaranteed GPUs", queue.guaranteed_gpus),
            ("borrow limit GPUs", _limit(queue.borrow_limit_gpus)),
            ("max GPUs", _limit(queue.max_gpus)),
            ("allocated GPUs", queue.allocated_gpus),
            ("running jobs", queue.running),
            ("pending jobs", queue.pending),
        ]
    )


def print_queues(found: QueueList) -> None:
    grid = render.table(
        "NAME", "WEIGHT", "GUARANTEED", "BORROW", "MAX", "GPUS", "RUNNING", "PENDING"
    )
    for queue in found.queues:
        render.add_row(
            grid,
            queue.name,
            f"{queue.weight:g}",
            queue.guaranteed_gpus,
            _limit(queue.borrow_limit_gpus),
            _limit(queue.max_gpus),
            queue.allocated_gpus,
            queue.running,
            queue.pending,
        )
    render.print_table(grid)


def _limit(value: int | None) -> str:
    return UNLIMITED if value is None else str(value)
