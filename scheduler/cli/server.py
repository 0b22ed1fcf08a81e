"""``corral server``: the API, the scheduling cycle and the loops in one process."""

from __future__ import annotations

import logging
import math
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import click

from scheduler.api.ratelimit import parse_rate
from scheduler.cli.config import CliError, CliInputError, cli_context
from scheduler.domain.units import parse_duration_s
from scheduler.settings import PolicyParams, RetrySettings, ServerSettings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _default(name: str) -> Any:
    """The ``ServerSettings`` default of a field: one source for flags and settings."""
    return next(f.default for f in fields(ServerSettings) if f.name == name)


def _as_duration(seconds: float) -> str:
    """``604800`` -> ``7d``, ``300`` -> ``5m``: a default as the flag takes it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _duration(value: str, flag: str, *, positive: bool) -> float:
    try:
        seconds = parse_duration_s(value)
    except ValueError as exc:
        raise CliError(f"{flag}: {exc}") from None
    if positive and seconds <= 0:
        raise CliError(f"{flag}: must be longer than 0s")
    return float(seconds)


def _service_loss(value: str | None) -> float:
    """``--service-loss``: ``any`` (no limit) or a duration."""
    if value is None or value.strip().lower() == "any":
        return math.inf
    return _duration(value, "--service-loss", positive=False)


def _policy_options(command: Any) -> Any:
    """The policy's pieces by registry name, and its parameters."""
    options = [
        click.option(
            "--policy-ordering",
            default=_default("ordering"),
            show_default=True,
            metavar="NAME",
            help="which pending job goes next",
        ),
        click.option(
            "--policy-admission",
            default=_default("admission"),
            metavar="NAME",
            show_default=True,
            help="quota rules that may hold a job back",
        ),
        click.option(
            "--policy-backfill",
            default=_default("backfill"),
            show_default=True,
            metavar="NAME",
            help="the decision pass (reservations, backfill)",
        ),
        click.option(
            "--policy-preemption",
            default=_default("preemption"),
            show_default=True,
            metavar="NAME",
            help="which running attempts to stop so that others can run",
        ),
        click.option(
            "--min-runtime",
            default=_as_duration(PolicyParams().min_runtime_s),
            show_default=True,
            metavar="DURATION",
            help="an attempt younger than this is never preempted",
        ),
        click.option(
            "--usage-half-life",
            default=_as_duration(PolicyParams().usage_half_life_s),
            show_default=True,
            metavar="DURATION",
            help="half-life of the queues' decayed usage (fair-share history)",
        ),
        click.option(
            "--service-loss",
            default="any",
            show_default=True,
            metavar="DURATION",
            help="reclaim_las stops for service only attempts that would lose at most "
            "this much work since their last checkpoint",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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
  corral server --policy-preemption none --usage-half-life 1d
"""
)
@click.option("--data-dir", metavar="DIR", help="database, admin token, checkpoints")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8470, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="above 1: that many API processes sharing the port, beside one process for the "
    "scheduling cycle and loops (PostgreSQL only; for many agents)",
)
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
@click.option(
    "--node-timeout-s",
    default=90.0,
    show_default=True,
    type=click.FloatRange(1),
    help="a node silent this long is lost; its agent stops its attempts before then",
)
@click.option("--cycle-interval-s", default=5.0, show_default=True, type=click.FloatRange(0.05))
@click.option(
    "--report-wait-s",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="PostgreSQL: how long an agent sync's reply may wait for the write of the starts "
    "and ends it reports; after that it answers with the desired state as read while the "
    "write goes on (the agent reports them until they are written)",
)
@click.option(
    "--retry-backoff-s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="wait before the first retry of a failed job; doubled each retry",
)
@click.option(
    "--retry-backoff-max-s",
    default=RetrySettings().backoff_max_s,
    show_default=True,
    type=click.FloatRange(0),
    help="the longest wait before a retry",
)
@click.option(
    "--drain-after-failures",
    default=RetrySettings().drain_after_failures,
    show_default=True,
    type=click.IntRange(0),
    help="drain a node after this many failed attempts in a row on it (0: never)",
)
@click.option(
    "--drain-after-jobs",
    default=RetrySettings().drain_after_jobs,
    show_default=True,
    type=click.IntRange(1),
    help="... if they are attempts of at least this many different jobs",
)
@click.option(
    "--keep-samples",
    default=_as_duration(_default("keep_samples_s")),
    show_default=True,
    help="keep raw GPU and host samples this long ...",
)
@click.option(
    "--keep-minute-rollups",
    default=_as_duration(_default("keep_minute_rollups_s")),
    show_default=True,
    help="... then 1-minute averages this long ...",
)
@click.option(
    "--keep-hour-rollups",
    default=_as_duration(_default("keep_hour_rollups_s")),
    show_default=True,
    help="... then 1-hour averages this long",
)
@_policy_options
@click.option(
    "--metrics-public/--no-metrics-public",
    default=False,
    show_default=True,
    help="serve GET /metrics without a token (for a Prometheus scraper)",
)
@click.option(
    "--submit-rate",
    metavar="RATE",
    help="jobs each user may submit, e.g. 100/s or 600/m (that many at once, then that "
    "rate; over it: 429) [default: unlimited]",
)
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="serve https")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="its private key")
@click.option(
    "--idle-util-pct",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0, 100),
    help="an attempt whose GPUs all stay under this utilisation ...",
)
@click.option(
    "--idle-window",
    default="30m",
    show_default=True,
    help="... for this long is flagged idle (and stopped if its queue says idle_action: stop)",
)
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
    workers: int,
    database_url: str | None,
    checkpoint_dir: str | None,
    node_timeout_s: float,
    cycle_interval_s: float,
    report_wait_s: float,
    log_level: str,
    **flags: Any,
) -> None:
    """Run the corral server (API, scheduling cycle, loops) until SIGINT/SIGTERM.

    On first start it creates an admin token and saves it to DATA_DIR/admin.token
    (mode 600); the CLI on this machine finds the server and the token by itself.
    """
    from scheduler.api.serve import serve
    from scheduler.api.workers import WorkersFailed
    from scheduler.leader import AlreadyServing
    from scheduler.runtime import build_policy

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    directory = Path(data_dir).expanduser() if data_dir else cli_context().corral_data_dir()
    settings = ServerSettings(
        data_dir=directory.resolve(),
        database_url=database_url_for(directory.resolve(), database_url),
        host=host,
        port=port,
        workers=workers,
        node_timeout_s=node_timeout_s,
        cycle_interval_s=cycle_interval_s,
        report_wait_s=report_wait_s,
        checkpoint_root=Path(checkpoint_dir).resolve() if checkpoint_dir else None,
        retry=_retry_settings(flags),
        **_telemetry_settings(flags),
        **_policy_settings(flags),
        **_observability_settings(flags),
    )
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise CliInputError(
            "--workers needs PostgreSQL (--database-url): SQLite supports one server process"
        )
    try:
        build_policy(settings)  # an unknown name is one line here, not a traceback later
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        serve(settings)
    except (AlreadyServing, WorkersFailed) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("sqlalchemy"):
            raise CliError(f"database error: {str(exc).splitlines()[0]}") from None
        raise


def _retry_settings(flags: dict[str, Any]) -> RetrySettings:
    """Retry backoff and bad-node draining from their flags (the rest keep defaults)."""
    return replace(
        RetrySettings(),
        backoff_base_s=float(flags["retry_backoff_s"]),
        backoff_max_s=float(flags["retry_backoff_max_s"]),
        drain_after_failures=int(flags["drain_after_failures"]),
        drain_after_jobs=int(flags["drain_after_jobs"]),
    )


def _observability_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """``ServerSettings`` fields of /metrics and the idle loop from their flags."""
    rate = flags.get("submit_rate")
    if rate:
        try:
            parse_rate(str(rate))
        except ValueError as exc:
            raise CliInputError(f"--submit-rate: {exc}") from None
    if bool(flags.get("tls_cert")) != bool(flags.get("tls_key")):
        raise CliInputError("--tls-cert and --tls-key go together")
    return {
        "submit_rate": rate or None,
        "tls_cert": Path(flags["tls_cert"]).resolve() if flags.get("tls_cert") else None,
        "tls_key": Path(flags["tls_key"]).resolve() if flags.get("tls_key") else None,
        "metrics_public": bool(flags["metrics_public"]),
        "idle_util_pct": float(flags["idle_util_pct"]),
        "idle_window_s": _duration(str(flags["idle_window"]), "--idle-window", positive=True),
    }


def _telemetry_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """How long each telemetry level is kept; each at least as long as the finer one."""
    keep = {
        name: _duration(str(flags[name]), "--" + name.replace("_", "-"), positive=True)
        for name in ("keep_samples", "keep_minute_rollups", "keep_hour_rollups")
    }
    if not keep["keep_samples"] <= keep["keep_minute_rollups"] <= keep["keep_hour_rollups"]:
        raise CliError(
            "--keep-samples, --keep-minute-rollups, --keep-hour-rollups: each must be at "
            "least as long as the one before"
        )
    return {f"{name}_s": seconds for name, seconds in keep.items()}


def _policy_settings(flags: dict[str, Any]) -> dict[str, Any]:
    """``ServerSettings`` fields from the policy flags (names checked by ``build_policy``)."""
    params = replace(
        PolicyParams(),  # the other parameters keep their defaults
        usage_half_life_s=_duration(
            str(flags["usage_half_life"]), "--usage-half-life", positive=True
        ),
        min_runtime_s=_duration(str(flags["min_runtime"]), "--min-runtime", positive=False),
        service_loss_s=_service_loss(flags.get("service_loss")),
    )
    return {
        "ordering": flags["policy_ordering"],
        "admission": flags["policy_admission"],
        "backfill": flags["policy_backfill"],
        "preemption": flags["policy_preemption"],
        "params": params,
    }
