"""``corral nodes``: list (the default), show (one row per GPU), drain and undrain."""

from __future__ import annotations

import click

from scheduler.cli import render
from scheduler.cli.config import cli_context
from scheduler.domain.views import GpuInfo, NodeInfo, NodeList

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="print JSON")


@click.group(
    invoke_without_command=True,
    epilog="""Examples:

\b
  corral nodes
  corral nodes show gpu-01
  corral nodes drain gpu-01 --reason "replace a fan"
""",
)
@JSON_OPTION
@click.pass_context
def nodes(ctx: click.Context, as_json: bool) -> None:
    """Nodes (machines running an agent); lists them with no subcommand."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_nodes, as_json=as_json)


@nodes.command(
    "list",
    epilog="""Example:

\b
  corral nodes list --json
""",
)
@JSON_OPTION
def list_nodes(as_json: bool) -> None:
    """List the nodes with their GPUs and load."""
    with cli_context().client() as client:
        found = client.list_nodes()
    if as_json:
        render.echo_json(found)
    else:
        print_nodes(found)


@nodes.command(
    epilog="""Example:

\b
  corral nodes show gpu-01
""",
)
@click.argument("name")
@JSON_OPTION
def show(name: str, as_json: bool) -> None:
    """Show a node and a table of its GPUs."""
    with cli_context().client() as client:
        node = client.get_node(name)
    if as_json:
        render.echo_json(node)
    else:
        print_node(node)


@nodes.command(
    epilog="""Example:

\b
  corral nodes drain gpu-01 --reason "replace a fan"
""",
)
@click.argument("name")
@click.option("--reason", help="why, shown in `corral nodes`")
@JSON_OPTION
def drain(name: str, reason: str | None, as_json: bool) -> None:
    """Place nothing new on a node; what runs there goes on."""
    with cli_context().client() as client:
        node = client.drain(name, reason)
    if as_json:
        render.echo_json(node)
    else:
        render.print_line(f"drained node {node.name}: {node.drain_reason or '-'}")


@nodes.command(
    epilog="""Example:

\b
  corral nodes undrain gpu-01
""",
)
@click.argument("name")
@JSON_OPTION
def undrain(name: str, as_json: bool) -> None:
    """Let the scheduler place jobs on a drained node again."""
    with cli_context().client() as client:
        node = client.undrain(name)
    if as_json:
        render.echo_json(node)
    else:
        render.print_line(f"node {node.name} is {node.state}")


def print_nodes(found: NodeList) -> None:
    grid = render.table(
        "NAME",
        "STATE",
        "GPUS",
        "FREE",
        "TYPES",
        "GPU UTIL",
        "GPU MEM",
        "HEALTH",
        "CPU",
        "MEMORY",
        "SEEN",
        "REASON",
    )
    for node in found.nodes:
        render.add_row(
            grid,
            node.name,
            node.state,
            f"{node.gpus_allocated}/{node.gpus_total} used",
            node.gpus_free,
            ",".join(node.gpu_types),
            render.format_pct(node.utilization_pct),
            _used_of(node.gpu_memory_used_mib, node.gpu_memory_total_mib),
            health_text(node),
            render.format_pct(node.cpu_pct),
            _used_of(node.memory_used_mib, node.memory_total_mib),
            render.age(node.last_seen_at),
            node.drain_reason,
        )
    render.print_table(grid)


def health_text(node: NodeInfo) -> str:
    """``ok``, or what is wrong: a lost agent, unhealthy GPUs, uncorrected ECC errors."""
    flags = []
    if node.state == "lost":
        flags.append("agent lost")
    if node.gpus_unhealthy:
        flags.append(f"{node.gpus_unhealthy} GPU(s) unhealthy")
    if node.gpus_with_ecc_errors:
        flags.append(f"ECC errors on {node.gpus_with_ecc_errors} GPU(s)")
    return ", ".join(flags) or "ok"


def print_node(node: NodeInfo) -> None:
    render.print_fields(
        [
            ("node", node.name),
            ("hostname", node.hostname),
            ("state", node.state),
            ("drain reason", node.drain_reason),
            ("last seen", render.format_time(node.last_seen_at)),
            ("GPUs", f"{node.gpus_allocated} of {node.gpus_total} used, {node.gpus_free} free"),
            ("GPU types", ", ".join(node.gpu_types) or None),
            ("GPU util", render.format_pct(node.utilization_pct)),
            ("GPU memory", _used_of(node.gpu_memory_used_mib, node.gpu_memory_total_mib)),
            ("health", health_text(node)),
            ("CPUs", f"{node.cpus} ({render.format_pct(node.cpu_pct)} busy)"),
            ("memory", _used_of(node.memory_used_mib, node.memory_total_mib)),
        ]
    )
    if node.gpus:
        print_gpus(node.gpus)


def print_gpus(gpus: list[GpuInfo]) -> None:
    grid = render.table(
        "#",
        "TYPE",
        "MEMORY",
        "UTIL",
        "TEMP",
        "POWER",
        "ECC",
        "HEALTH",
        "JOB",
        "ATTEMPT",
        "UUID",
        title="GPUs",
    )
    for gpu in gpus:
        render.add_row(
            grid,
            gpu.index,
            gpu.gpu_type,
            _used_of(gpu.memory_used_mib, gpu.memory_total_mib),
            render.format_pct(gpu.utilization_pct),
            None if gpu.temperature_c is None else f"{gpu.temperature_c:.0f}C",
            None if gpu.power_w is None else f"{gpu.power_w:.0f}W",
            gpu.ecc_errors,
            "ok" if gpu.healthy else "UNHEALTHY",
            gpu.job_id,
            gpu.attempt_id,
            gpu.uuid,
        )
    render.print_line("")
    render.print_table(grid)


def _used_of(used_mib: int | None, total_mib: int) -> str:
    total = render.format_mib(total_mib)
    return total if used_mib is None else f"{render.format_mib(used_mib)}/{total}"
