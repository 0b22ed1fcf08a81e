"""The root group: lazy subcommands, help with examples, version, missing modules."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from scheduler import __version__
from scheduler.cli.main import LAZY_COMMANDS, LazyGroup, cli, load_command

from .conftest import Cli

HEAVY = ("fastapi", "sqlalchemy", "uvicorn", "agents")
PROBE = """
import json, sys
from scheduler.cli.main import cli
try:
    cli.main({args!r}, prog_name="corral")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r}
                        or m in {heavy!r} or m.startswith("scheduler.cli."))))
"""


def imported_by(*args: str) -> list[str]:
    """The heavy or CLI modules a fresh ``corral ARGS`` process imports."""
    code = PROBE.format(args=list(args), heavy=list(HEAVY))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_submit_help_imports_nothing_of_the_server() -> None:
    loaded = imported_by("submit", "--help")
    assert not {"fastapi", "sqlalchemy", "uvicorn", "agents"} & set(loaded)
    assert "scheduler.cli.jobs" in loaded and "scheduler.cli.queues" not in loaded


def test_root_help_imports_no_subcommand() -> None:
    loaded = imported_by("--help")
    assert [m for m in loaded if m.startswith("scheduler.cli.")] == [
        "scheduler.cli.config",
        "scheduler.cli.main",
    ]
    assert not {"fastapi", "sqlalchemy", "uvicorn", "agents"} & set(loaded)


def test_root_help_lists_every_command_in_order() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    listed = [
        line.split()[0]
        for line in result.stdout.split("Commands:")[1].splitlines()
        if line.startswith("  ") and not line.startswith("    ")
    ]
    assert listed[: len(LAZY_COMMANDS)] == list(LAZY_COMMANDS)
    assert "Examples:" in result.stdout


def test_version() -> None:
    assert CliRunner().invoke(cli, ["--version"]).stdout.strip() == f"corral, version {__version__}"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        found.append((*prefix, name))
        if isinstance(command, click.Group) and not isinstance(command, LazyGroup):
            found += _commands(command, (*prefix, name))
    return found


MINE = [
    name
    for name, (target, _) in LAZY_COMMANDS.items()
    if target.split(":")[0]
    not in ("scheduler.cli.server", "scheduler.cli.db", "scheduler.cli.demo")
]


@pytest.mark.parametrize("name", MINE)
def test_every_command_loads_and_its_help_has_an_example(name: str) -> None:
    command = load_command(name, LAZY_COMMANDS[name][0])
    commands: list[tuple[str, ...]] = [(name,)]
    if isinstance(command, click.Group):
        commands += _commands(command, (name,))
    for path in commands:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, result.output
        assert "Example" in result.stdout, path


def test_a_missing_module_is_a_clean_error() -> None:
    group = LazyGroup(name="corral", lazy={"ghost": ("scheduler.cli.no_such_module:x", "")})
    result = CliRunner().invoke(group, ["ghost", "--flag"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: `corral ghost` is not available: module scheduler.cli.no_such_module is missing\n"
    )


def test_a_missing_dependency_inside_a_module_is_not_hidden() -> None:
    with pytest.raises(ModuleNotFoundError):
        load_command("x", "no_such_package.sub:x")


def test_usage_errors_exit_2(corral: Cli) -> None:
    assert corral("show", "abc").exit_code == 2
    assert corral("nosuch").exit_code == 2
