"""``corral queues``: list (the default), show, create and update fair-share queues."""

from __future__ import annotations

from typing import Any

import click
from pydantic import ValidationError

from scheduler.cli import render
from scheduler.cli.config import CliError, cli_context
from scheduler.cli.spec_input import format_validation_error
from scheduler.domain.spec import QueuePatch, QueueSpec
from scheduler.domain.views import QueueInfo, QueueList, TypeQuotaView

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print JSON")
UNLIMITED = "unlimited"
SETTINGS = "--weight, --guaranteed-gpus, --borrow-limit-gpus, --max-gpus, --parent or --type-quota"


def queue_options(create: bool) -> Any:
    """The queue settings, shared by ``create`` and ``update``."""

    def decorate(command: Any) -> Any:
        suffix = " [default: 1]" if create else ""
        replaces = "; replaces all of them" if not create else ""
        options = [
            click.option("--weight", type=float, help=f"fair-share weight{suffix}"),
            click.option("--guaranteed-gpus", type=int, help="GPUs it always gets back"),
            click.option(
                "--borrow-limit-gpus", type=int, help="most GPUs it may borrow [unlimited]"
            ),
            click.option("--max-gpus", type=int, help="cap on the GPUs it holds [unlimited]"),
            click.option("--parent", metavar="ORG", help="the org it belongs to (a queue)"),
            click.option(
                "--type-quota",
                "type_quotas",
                multiple=True,
                metavar="TYPE=GUARANTEE[:MAX]",
                help=f"guarantee (and cap) for one GPU type; repeatable{replaces}",
            ),
            click.option(
                "--idle-action",
                type=click.Choice(["none", "stop"]),
                help="attempts whose GPUs stay idle: only flag them, or stop them [none]",
            ),
        ]
        if not create:
            options += [
                click.option("--no-parent", is_flag=True, help="make it a top-level queue"),
                click.option("--no-type-quotas", is_flag=True, help="remove its type quotas"),
            ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def parse_type_quota(text: str) -> dict[str, object]:
    """``A100-80GB=4:8`` -> gpu_type A100-80GB, guaranteed 4, max 8; ``L4=2`` has no max."""
    gpu_type, sep, amounts = text.partition("=")
    guarantee, _, cap = amounts.partition(":")
    try:
        if not sep or not gpu_type.strip():
            raise ValueError
        quota: dict[str, object] = {
            "gpu_type": gpu_type.strip(),
            "guaranteed_gpus": int(guarantee),
        }
        if cap:
            quota["max_gpus"] = int(cap)
    except ValueError:
        raise CliError(
            f"--type-quota {text!r}: use TYPE=GUARANTEE[:MAX], e.g. A100-80GB=4:8"
        ) from None
    return quota


def _settings(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags that were given, as QueueSpec / QueuePatch fields."""
    no_parent = flags.pop("no_parent", False)
    no_quotas = flags.pop("no_type_quotas", False)
    quotas = flags.pop("type_quotas", ())
    if no_parent and flags.get("parent") is not None:
        raise CliError("give --parent or --no-parent, not both")
    if no_quotas and quotas:
        raise CliError("give --type-quota or --no-type-quotas, not both")
    fields = {key: value for key, value in flags.items() if value is not None}
    if quotas:
        fields["type_quotas"] = [parse_type_quota(text) for text in quotas]
    if no_parent:
        fields["parent"] = None
    if no_quotas:
        fields["type_quotas"] = []
    return fields


@click.group(
    invoke_without_command=True,
    epilog="""Examples:

\b
  corral queues
  corral queues create ml --guaranteed-gpus 16
  corral queues create research --parent ml --weight 2 --guaranteed-gpus 8
  corral queues update research --max-gpus 16 --type-quota A100-80GB=4:8
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
    """List the queues: fair share now, what they hold and borrow, decayed usage, what waits.

    Like Slurm's ``sshare``, for GPUs. An org's figures are its queues' sums; its
    queues follow it.
    """
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
  corral queues create vision --parent ml --type-quota A100-80GB=4:8 --type-quota L4=2
""",
)
@click.argument("name")
@queue_options(create=True)
@JSON_OPTION
def create(name: str, as_json: bool, **settings: Any) -> None:
    """Create a queue (under an org with --parent)."""
    given = _settings(settings)
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
  corral queues update research --no-parent --type-quota A100-80GB=8
""",
)
@click.argument("name")
@queue_options(create=False)
@JSON_OPTION
def update(name: str, as_json: bool, **settings: Any) -> None:
    """Change some settings of a queue; the others keep their value."""
    given = _settings(settings)
    if not given:
        raise CliError(f"nothing to update: give {SETTINGS}")
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
            ("parent", queue.parent),
            ("weight", f"{queue.weight:g}"),
            ("guaranteed GPUs", queue.guaranteed_gpus),
            ("borrow limit GPUs", _limit(queue.borrow_limit_gpus)),
            ("max GPUs", _limit(queue.max_gpus)),
            ("type quotas", _quotas(queue.type_quotas)),
            ("idle action", queue.idle_action),
            ("fair share GPUs", _gpus(queue.fair_share_gpus)),
            ("allocated GPUs", queue.allocated_gpus),
            ("borrowed GPUs", queue.borrowed_gpus),
            ("usage", f"{_gpus(queue.usage_gpu_hours)} GPU-hours (decayed)"),
            ("running jobs", queue.running),
            ("pending jobs", queue.pending),
        ]
    )


def print_queues(found: QueueList) -> None:
    grid = render.table(
        "NAME",
        "PARENT",
        "WEIGHT",
        "GUARANTEE",
        "FAIR SHARE",
        "HELD",
        "BORROWED",
        "USAGE (GPU-h)",
        "PENDING",
    )
    for queue in in_tree_order(found.queues):
        render.add_row(
            grid,
            queue.name,
            queue.parent,
            f"{queue.weight:g}",
            queue.guaranteed_gpus,
            _gpus(queue.fair_share_gpus),
            queue.allocated_gpus,
            queue.borrowed_gpus,
            _gpus(queue.usage_gpu_hours),
            queue.pending,
        )
    render.print_table(grid)


def in_tree_order(queues: list[QueueInfo]) -> list[QueueInfo]:
    """Top-level queues by name, each org followed by its queues (as ``sshare`` does)."""
    children: dict[str, list[QueueInfo]] = {}
    for queue in queues:
        if queue.parent is not None:
            children.setdefault(queue.parent, []).append(queue)
    names = {q.name for q in queues}
    ordered: list[QueueInfo] = []
    for queue in sorted(queues, key=lambda q: q.name):
        if queue.parent is None or queue.parent not in names:
            ordered.append(queue)
            ordered.extend(sorted(children.get(queue.name, []), key=lambda q: q.name))
    return ordered


def _gpus(value: float) -> str:
    """``2.0`` -> ``2``, ``2.345`` -> ``2.3``: a tenth of a GPU is enough to read."""
    return f"{value:.1f}".removesuffix(".0")


def _quotas(quotas: list[TypeQuotaView]) -> str | None:
    """``A100-80GB=4:8, L4=2``: the flag syntax, so it can be typed back."""
    shown = [
        f"{q.gpu_type}={q.guaranteed_gpus}" + ("" if q.max_gpus is None else f":{q.max_gpus}")
        for q in quotas
    ]
    return ", ".join(shown) or None


def _limit(value: int | None) -> str:
    return UNLIMITED if value is None else str(value)
