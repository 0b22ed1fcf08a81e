"""The design's import rules, checked on the source (AST), plus import-linter's contracts.

Rules (design: "Rooms of the code"): pynvml only in agents/gpu/nvml.py; sqlalchemy only
in scheduler/store/ (and migrations/); ray only in agents/raycluster.py and workloads/;
torch only in workloads/; click only in scheduler/cli/; matplotlib only in
scheduler/sim/plots.py (an optional dependency). scheduler/domain and
scheduler/policy are pure: no I/O library, no clock or logging module, no other room of
the scheduler; the policy imports only the standard library and scheduler.domain.
Every import counts: at module level, inside functions, under TYPE_CHECKING, relative,
and ``importlib.import_module("name")`` with a literal name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED_ROOTS = ("scheduler", "agents", "workloads")

IO_LIBRARIES = frozenset(
    {
        "sqlalchemy",
        "alembic",
        "fastapi",
        "starlette",
        "httpx",
        "requests",
        "click",
        "ray",
        "torch",
        "psutil",
        "uvicorn",
        "pynvml",
        "yaml",
        "rich",
    }
)
# Standard-library modules that do I/O, read a clock or log: not in the pure rooms.
IMPURE_STDLIB = frozenset(
    {
        "os",
        "sys",
        "io",
        "time",
        "logging",
        "socket",
        "subprocess",
        "threading",
        "multiprocessing",
        "asyncio",
        "pathlib",
        "shutil",
        "tempfile",
        "sqlite3",
        "urllib",
        "http",
        "signal",
        "select",
        "selectors",
    }
)


@dataclass(frozen=True)
class Import:
    file: str  # path relative to the repository root, with "/"
    line: int
    module: str  # absolute dotted name; for ``from a import b`` it is ``a.b``

    @property
    def top(self) -> str:
        return self.module.split(".")[0]

    def is_in(self, package: str) -> bool:
        return self.module == package or self.module.startswith(package + ".")

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.module}"


def module_name(rel_path: str) -> tuple[str, bool]:
    """``scheduler/policy/decide.py`` -> (``scheduler.policy.decide``, False)."""
    parts = rel_path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imports_in_source(source: str, rel_path: str) -> list[Import]:
    name, is_package = module_name(rel_path)
    package = name if is_package else name.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source, filename=rel_path)):
        if isinstance(node, ast.Import):
            found += [Import(rel_path, node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, package)
            found += [Import(rel_path, node.lineno, f"{base}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append(Import(rel_path, node.lineno, arg.value))
    return found


def _resolve_from(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in {"import_module", "__import__"} and bool(node.args)


def all_imports() -> list[Import]:
    found: list[Import] = []
    for root in SCANNED_ROOTS:
        for path in sorted((ROOT / root).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            found += imports_in_source(path.read_text(encoding="utf-8"), rel)
    return found


ALL_IMPORTS = all_imports()


@dataclass(frozen=True)
class Confined:
    """``library`` may be imported only in files under one of ``allowed`` (file or dir/)."""

    libraries: tuple[str, ...]
    allowed: tuple[str, ...]

    def violations(self, imports: list[Import]) -> list[Import]:
        return [
            i
            for i in imports
            if i.top in self.libraries
            and not any(
                i.file == a or (a.endswith("/") and i.file.startswith(a)) for a in self.allowed
            )
        ]


CONFINED = [
    Confined(("pynvml",), ("agents/gpu/nvml.py",)),
    Confined(("sqlalchemy",), ("scheduler/store/", "migrations/")),
    Confined(("ray",), ("agents/raycluster.py", "workloads/")),
    Confined(("torch", "torchvision", "torchaudio"), ("workloads/",)),
    Confined(("click",), ("scheduler/cli/",)),
    Confined(("matplotlib",), ("scheduler/sim/plots.py",)),  # optional: imported lazily
]


@pytest.mark.parametrize("rule", CONFINED, ids=lambda r: r.libraries[0])
def test_library_is_confined_to_its_room(rule: Confined) -> None:
    bad = rule.violations(ALL_IMPORTS)
    assert not bad, f"{rule.libraries[0]} only in {rule.allowed}:\n" + "\n".join(map(str, bad))


@dataclass(frozen=True)
class PureRoom:
    """A room that imports the standard library (minus I/O), these packages, and itself."""

    room: str  # dotted package, e.g. scheduler.policy
    may_import: tuple[str, ...]  # dotted packages besides the standard library

    def violations(self, imports: list[Import]) -> list[Import]:
        path = self.room.replace(".", "/") + "/"
        return [i for i in imports if i.file.startswith(path) and not self.allows(i)]

    def allows(self, imp: Import) -> bool:
        if imp.top in IO_LIBRARIES or imp.top in IMPURE_STDLIB:
            return False
        if any(imp.is_in(p) for p in (self.room, *self.may_import)):
            return True
        return imp.top != "scheduler" and imp.top in sys.stdlib_module_names


PURE_ROOMS = [
    PureRoom("scheduler.domain", ("pydantic", "pydantic_core", "annotated_types")),
    PureRoom("scheduler.policy", ("scheduler.domain",)),
]


@pytest.mark.parametrize("room", PURE_ROOMS, ids=lambda r: r.room)
def test_pure_rooms_import_nothing_impure(room: PureRoom) -> None:
    bad = room.violations(ALL_IMPORTS)
    assert not bad, f"{room.room} must stay pure:\n" + "\n".join(map(str, bad))


def test_the_scan_sees_the_rooms() -> None:
    files = {i.file for i in ALL_IMPORTS}
    assert {"scheduler/domain/spec.py", "scheduler/policy/decide.py"} <= files


@pytest.mark.parametrize(
    ("source", "rel_path", "modules"),
    [
        ("import a.b, c", "scheduler/x.py", ["a.b", "c"]),
        ("from sqlalchemy import select", "scheduler/x.py", ["sqlalchemy.select"]),
        ("from . import ordering", "scheduler/policy/decide.py", ["scheduler.policy.ordering"]),
        ("from .. import store", "scheduler/policy/decide.py", ["scheduler.store"]),
        ("from ..store.db import x", "scheduler/policy/decide.py", ["scheduler.store.db.x"]),
        ("from .decide import P", "scheduler/policy/__init__.py", ["scheduler.policy.decide.P"]),
        ("from scheduler import cycle", "scheduler/policy/a.py", ["scheduler.cycle"]),
        ("def f():\n    import torch", "agents/a.py", ["torch"]),
        ("if TYPE_CHECKING:\n    import ray", "agents/a.py", ["ray"]),
        ("importlib.import_module('pynvml')", "agents/a.py", ["pynvml"]),
        ("__import__('click')", "agents/a.py", ["click"]),
    ],
)
def test_the_scanner(source: str, rel_path: str, modules: list[str]) -> None:
    assert [i.module for i in imports_in_source(source, rel_path)] == modules


@pytest.mark.parametrize(
    ("room", "file", "module", "allowed"),
    [
        (PURE_ROOMS[1], "scheduler/policy/a.py", "scheduler.domain.snapshot.Snapshot", True),
        (PURE_ROOMS[1], "scheduler/policy/a.py", "collections.abc.Callable", True),
        (PURE_ROOMS[1], "scheduler/policy/a.py", "pydantic.BaseModel", False),
        (PURE_ROOMS[1], "scheduler/policy/a.py", "scheduler.store.db", False),
        (PURE_ROOMS[1], "scheduler/policy/a.py", "time.monotonic", False),
        (PURE_ROOMS[1], "scheduler/policy/a.py", "logging", False),
        (PURE_ROOMS[0], "scheduler/domain/a.py", "pydantic.BaseModel", True),
        (PURE_ROOMS[0], "scheduler/domain/a.py", "scheduler.policy", False),
        (PURE_ROOMS[0], "scheduler/domain/a.py", "scheduler.paths", False),
        (PURE_ROOMS[0], "scheduler/domain/a.py", "httpx", False),
    ],
)
def test_the_pure_room_rule(room: PureRoom, file: str, module: str, allowed: bool) -> None:
    assert room.allows(Import(file, 1, module)) is allowed


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
