"""Examples in Markdown pages, as the doc tests run them.

The conventions, for whoever writes a page with runnable examples:

- A ```` ```console ```` block holds commands, each on a line starting with ``$ ``,
  each followed by the output it shows. A command must exit 0 (show a failure with
  ``... || echo "exit code $?"``). Each shown output line must match one line of the
  real output, in order; lines in between may be left out; whitespace runs count as
  one space; ``...`` stands for any text (a line of only ``...`` just marks a gap).
- A ```` ```sh ```` block is a script: it runs with ``bash -euo pipefail`` and must
  exit 0. Its output is not checked.
- A block whose info string has ``file=NAME`` (```` ```python file=train.py ````) is
  not run: its text is written to ``NAME`` in the working directory, for the
  commands after it.
- Any other block (```` ```text ````, ```` ```yaml ````...) is only shown, never run:
  use it for commands that need a real installation (sudo, systemctl, kubectl) or
  placeholders.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\S*)(.*)$")
READ_ONLY = ("corral show", "corral jobs", "corral logs", "corral queues", "corral nodes")


@dataclass(frozen=True)
class Command:
    line: int  # 1-based line of the page
    text: str
    expected: tuple[str, ...]

    def read_only(self) -> bool:
        """Whether running it again changes nothing (so it may be polled)."""
        words = shlex.split(self.text.split("|")[0])
        head = " ".join(w for w in words if not w.startswith("-"))
        return head.startswith(READ_ONLY) and not head.startswith("corral queues create")


@dataclass(frozen=True)
class Block:
    line: int
    kind: str  # "console", "sh", "file" or "shown"
    body: str
    file_name: str | None = None
    commands: tuple[Command, ...] = field(default=())


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown page, in order."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        start = index + 1
        end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
        body = "\n".join(lines[start:end]) + "\n"
        found.append(_block(start, match.group(1), match.group(2), body))
        index = end + 1
    return found


def _block(line: int, language: str, info: str, body: str) -> Block:
    file_match = re.search(r"\bfile=(\S+)", info)
    if file_match:
        return Block(line, "file", body, file_name=file_match.group(1))
    if language == "console":
        return Block(line, "console", body, commands=tuple(parse_console(body, line)))
    if language == "sh":
        return Block(line, "sh", body)
    return Block(line, "shown", body)


def parse_console(body: str, first_line: int) -> list[Command]:
    commands: list[Command] = []
    current: tuple[int, str] | None = None
    expected: list[str] = []
    for offset, line in enumerate(body.splitlines()):
        if line.startswith("$ "):
            if current is not None:
                commands.append(Command(current[0], current[1], tuple(expected)))
            current, expected = (first_line + offset + 1, line[2:]), []
        elif current is None:
            raise ValueError(f"line {first_line + offset + 1}: output before any `$ ` command")
        elif line.strip():
            expected.append(line)
    if current is not None:
        commands.append(Command(current[0], current[1], tuple(expected)))
    return commands


def _pattern(expected: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in normalize(expected).split("...")]
    return re.compile(".*".join(parts))


def normalize(line: str) -> str:
    return " ".join(line.split())


def missing_output(expected: tuple[str, ...], output: str) -> str | None:
    """The first expected line not found (in order) in ``output``; None when all are."""
    actual = [normalize(line) for line in output.splitlines()]
    position = 0
    for line in expected:
        if normalize(line) == "...":
            continue
        pattern = _pattern(line)
        while position < len(actual) and not pattern.fullmatch(actual[position]):
            position += 1
        if position == len(actual):
            return line
        position += 1
    return None
