"""``corral token``: create (the secret is printed once), list and revoke tokens (admins)."""

from __future__ import annotations

import click
from pydantic import ValidationError

from scheduler.cli import render
from scheduler.cli.config import CliInputError, cli_context
from scheduler.cli.spec_input import format_validation_error
from scheduler.domain.auth import TokenSpec

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print JSON")


@click.group(
    "token",
    epilog="""Examples:

\b
  corral token create --user ann --expires 30d    # prints the token once
  corral token create --node gpu-07               # an agent token for one node
  corral token list --user ann
  corral token revoke 12                          # stops working at once
""",
)
def token() -> None:
    """API tokens: a user's (its role) or a node agent's (sync as that node only)."""


@token.command("create", epilog="Example:\n\n\b\n  corral token create --user ann --expires 30d")
@click.option("--user", help="the user it speaks for")
@click.option("--node", help="the node whose agent it is for (role agent)")
@click.option("--name", help="a name for it [default: the user or node and a time]")
@click.option("--expires", metavar="DURATION", help="e.g. 30d, 12h [default: never]")
@JSON_OPTION
def create(
    user: str | None, node: str | None, name: str | None, expires: str | None, as_json: bool
) -> None:
    """Create a token. Its secret is shown this once: keep it."""
    fields = {"user": user, "node": node, "name": name, "expires_in_s": expires}
    try:
        spec = TokenSpec.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise CliInputError(format_validation_error(exc)) from None
    with cli_context().client() as client:
        created = client.create_token(spec)
    if as_json:
        render.echo_json(created)
        return
    click.echo(created.token)
    owner = f"user {created.user}" if created.user else f"node {created.node}"
    expiry = render.format_time(created.expires_at) if created.expires_at else "never"
    render.print_line(
        f"token {created.id} ({created.name}) for {owner}, role {created.role}, "
        f"expires {expiry}; it is shown only now",
        err=True,
    )


@token.command("list", epilog="Example:\n\n\b\n  corral token list --user ann")
@click.option("--user", help="only this user's tokens")
@JSON_OPTION
def list_tokens(user: str | None, as_json: bool) -> None:
    """Every token, revoked and expired ones too (never a secret)."""
    with cli_context().client() as client:
        found = client.list_tokens(user)
    if as_json:
        render.echo_json(found)
        return
    grid = render.table("ID", "NAME", "ROLE", "USER", "NODE", "CREATED", "EXPIRES", "REVOKED")
    for row in found.tokens:
        render.add_row(
            grid,
            row.id,
            row.name,
            row.role,
            row.user or "-",
            row.node or "-",
            render.format_time(row.created_at),
            render.format_time(row.expires_at) if row.expires_at else "never",
            render.format_time(row.revoked_at) if row.revoked_at else "-",
        )
    render.print_table(grid)


@token.command("revoke", epilog="Example:\n\n\b\n  corral token revoke 12")
@click.argument("token_id", type=click.IntRange(min=1))
def revoke(token_id: int) -> None:
    """Revoke a token by its id (corral token list); it stops working at once."""
    with cli_context().client() as client:
        row = client.revoke_token(token_id)
    render.print_line(f"revoked token {row.id} ({row.name})")
