"""The generated job spec reference is current; the doc-test conventions hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs import doctest_md

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_committed_spec_reference_is_the_generated_one() -> None:
    generated = subprocess.run(
        [sys.executable, str(DOCS / "gen_spec_reference.py")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    committed = (DOCS / "job-spec-reference.md").read_text()
    assert committed == generated, (
        "docs/job-spec-reference.md is stale: "
        "python docs/gen_spec_reference.py > docs/job-spec-reference.md"
    )


def test_spec_reference_lists_every_field() -> None:
    from scheduler.domain.spec import JobSpec, Resources

    text = (DOCS / "job-spec-reference.md").read_text()
    for name in [*JobSpec.model_fields, *Resources.model_fields]:
        assert f"| `{name}` |" in text


def test_blocks_are_classified(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "intro\n"
        "```console\n$ corral jobs\nID NAME\n1 ...\n$ corral submit -- true\n```\n"
        "```sh\ncorral nodes\n```\n"
        "```python file=train.py\nprint(1)\n```\n"
        "```text\nsudo systemctl start corral-server\n```\n"
    )
    kinds = [(b.kind, b.file_name) for b in doctest_md.blocks(page)]
    assert kinds == [("console", None), ("sh", None), ("file", "train.py"), ("shown", None)]
    console = doctest_md.blocks(page)[0]
    assert [(c.line, c.text, c.expected) for c in console.commands] == [
        (3, "corral jobs", ("ID NAME", "1 ...")),
        (6, "corral submit -- true", ()),
    ]
    assert console.commands[0].read_only()
    assert not console.commands[1].read_only()


@pytest.mark.parametrize(
    ("expected", "output", "missing"),
    [
        (("job 2 succeeded",), "submitted job 2\njob 2   succeeded\n", None),
        (("a ...", "...", "c"), "a 1\nb\nc\n", None),
        (("c", "a ..."), "a 1\nb\nc\n", "a ..."),  # order matters
        (("job 2 failed",), "job 2 succeeded\n", "job 2 failed"),
        (("status: ...",), "xstatus: failed\n", "status: ..."),  # a whole line
    ],
)
def test_missing_output(expected: tuple[str, ...], output: str, missing: str | None) -> None:
    assert doctest_md.missing_output(expected, output) == missing


def test_output_before_a_command_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```console\nstray\n$ corral jobs\n```\n")
    with pytest.raises(ValueError, match="output before any"):
        doctest_md.blocks(page)
