"""``corral audit``: the log of state-changing API calls, newest first (admins only)."""

from __future__ import annotations

import click

from scheduler.cli import render
from scheduler.cli.config import cli_context


@click.command(
    "audit",
    epilog="""Examples:

\b
  corral audit --since 1h
  corral audit --user ann --since 2026-01-31T00:00Z
""",
)
@click.option("--since", help="a duration back from now (12h, 7d) or an ISO 8601 time")
@click.option("--user", help="only this caller's calls")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def audit(since: str | None, user: str | None, as_json: bool) -> None:
    """Who did what, when, and what the server answered (refusals too)."""
    with cli_context().client() as client:
        found = client.audit(since=since, user=user)
    if as_json:
        render.echo_json(found)
        return
    grid = render.table("AT", "WHO", "ROLE", "CALL", "TARGET", "STATUS")
    for event in found.events:
        render.add_row(
            grid,
            render.format_time(event.at),
            event.who or "(no token)",
            event.role or "-",
            f"{event.method} {event.path}",
            event.target or "-",
            event.status,
        )
    render.print_table(grid)
