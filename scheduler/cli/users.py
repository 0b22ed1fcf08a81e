"""``corral users``: create, list, show, update and delete users (admins only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click
from pydantic import BaseModel, ValidationError

from scheduler.cli import render
from scheduler.cli.config import CliInputError, cli_context
from scheduler.cli.spec_input import format_validation_error
from scheduler.domain.auth import UserPatch, UserSpec, UserView

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print JSON")
ROLES = click.Choice(["admin", "operator", "user"])
M = TypeVar("M", bound=BaseModel)


def _parse(build: Callable[[], M]) -> M:
    try:
        return build()
    except ValidationError as exc:
        raise CliInputError(format_validation_error(exc)) from None


def _show(user: UserView, as_json: bool) -> None:
    if as_json:
        render.echo_json(user)
        return
    queues = ", ".join(user.queues) or "-"
    render.print_fields([("name", user.name), ("role", user.role), ("queues", queues)])


@click.group(
    "users",
    invoke_without_command=True,
    epilog="""Examples:

\b
  corral users create ann --queue team-a --queue team-b
  corral users create ops1 --role operator
  corral users update ann --queue team-a     # replaces her queues
  corral users delete ann                    # and her tokens
""",
)
@JSON_OPTION
@click.pass_context
def users(ctx: click.Context, as_json: bool) -> None:
    """Users: a role (admin, operator, user) and the queues a user may submit to."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_users, as_json=as_json)


@users.command("list", epilog="Example:\n\n\b\n  corral users list --json")
@JSON_OPTION
def list_users(as_json: bool) -> None:
    """Every user, its role and queues."""
    with cli_context().client() as client:
        found = client.list_users()
    if as_json:
        render.echo_json(found)
        return
    grid = render.table("NAME", "ROLE", "QUEUES", "CREATED")
    for user in found.users:
        queues = ", ".join(user.queues) or "-"
        render.add_row(grid, user.name, user.role, queues, render.format_time(user.created_at))
    render.print_table(grid)


@users.command("show", epilog="Example:\n\n\b\n  corral users show ann")
@click.argument("name")
@JSON_OPTION
def show(name: str, as_json: bool) -> None:
    with cli_context().client() as client:
        _show(client.get_user(name), as_json)


@users.command("create", epilog="Example:\n\n\b\n  corral users create ann --queue team-a")
@click.argument("name")
@click.option("--role", type=ROLES, default="user", show_default=True)
@click.option("--queue", "queues", multiple=True, help="a queue it may submit to; repeatable")
@JSON_OPTION
def create(name: str, role: str, queues: tuple[str, ...], as_json: bool) -> None:
    """Create a user (then give it a token: corral token create --user NAME)."""
    spec = _parse(lambda: UserSpec.model_validate({"name": name, "role": role, "queues": queues}))
    with cli_context().client() as client:
        _show(client.create_user(spec), as_json)


@users.command("update", epilog="Example:\n\n\b\n  corral users update ann --role operator")
@click.argument("name")
@click.option("--role", type=ROLES, help="a new role (its tokens follow at once)")
@click.option("--queue", "queues", multiple=True, help="its queues, replacing the old; repeatable")
@click.option("--no-queues", is_flag=True, help="remove every membership")
@JSON_OPTION
def update(
    name: str, role: str | None, queues: tuple[str, ...], no_queues: bool, as_json: bool
) -> None:
    fields: dict[str, object] = {}
    if role:
        fields["role"] = role
    if queues or no_queues:
        fields["queues"] = [] if no_queues else list(queues)
    if not fields:
        raise CliInputError("nothing to update: give --role, --queue or --no-queues")
    patch = _parse(lambda: UserPatch.model_validate(fields))
    with cli_context().client() as client:
        _show(client.update_user(name, patch), as_json)


@users.command("delete", epilog="Example:\n\n\b\n  corral users delete ann")
@click.argument("name")
def delete(name: str) -> None:
    """Delete a user and its tokens (its jobs stay)."""
    with cli_context().client() as client:
        client.delete_user(name)
    render.print_line(f"deleted user {name} and its tokens")
