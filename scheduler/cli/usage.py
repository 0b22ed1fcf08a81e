"""``corral usage``: GPU-hours allocated, used and lost per queue or user, and jobs run."""

from __future__ import annotations

import csv
from pathlib import Path

import click

from scheduler.cli import render
from scheduler.cli.config import CliError, cli_context
from scheduler.domain.views import UsageEntry, UsageReport

CSV_COLUMNS = [
    "key",
    "gpu_hours_allocated",
    "gpu_hours_used",
    "gpu_hours_lost_to_preemption",
    "jobs_run",
    "jobs_failed",
    "jobs_preempted",
]


@click.command(
    "usage",
    epilog="""Examples:

\b
  corral usage                          # per queue, the last 7 days
  corral usage --by user --since 30d
  corral usage --since 2026-01-01T00:00Z --csv january.csv
""",
)
@click.option("--by", type=click.Choice(["queue", "user"]), default="queue", show_default=True)
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="a duration back from now (12h, 7d) or an ISO 8601 time with its offset",
)
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False), help="also write the rows to FILE"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def usage(by: str, since: str, csv_path: str | None, as_json: bool) -> None:
    """GPU-hours allocated, used (weighted by sampled utilisation) and lost to
    preemption, with the jobs run, failed and preempted, per queue or user."""
    with cli_context().client() as client:
        report = client.usage(by=by, since=since)
    if csv_path is not None:
        write_csv(report.entries, Path(csv_path))
    if as_json:
        render.echo_json(report)
    else:
        print_usage(report)


def write_csv(entries: list[UsageEntry], path: Path) -> None:
    try:
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for entry in entries:
                writer.writerow(entry.model_dump(include=set(CSV_COLUMNS)))
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


def print_usage(report: UsageReport) -> None:
    grid = render.table(
        report.by.upper(),
        "GPU-H ALLOC",
        "GPU-H USED",
        "USED %",
        "GPU-H LOST",
        "JOBS",
        "FAILED",
        "PREEMPTED",
        title=f"usage since {render.format_time(report.since)}",
    )
    for e in report.entries:
        share = (
            None if not e.gpu_hours_allocated else 100 * e.gpu_hours_used / e.gpu_hours_allocated
        )
        render.add_row(
            grid,
            e.key,
            f"{e.gpu_hours_allocated:.2f}",
            f"{e.gpu_hours_used:.2f}",
            render.format_pct(share),
            f"{e.gpu_hours_lost_to_preemption:.2f}",
            e.jobs_run,
            e.jobs_failed,
            e.jobs_preempted,
        )
    render.print_table(grid)
