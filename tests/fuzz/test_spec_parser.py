"""Hypothesis over the job-spec parser: any file gives a JobSpec or one clean error line.

``corral submit -f FILE`` reads YAML a person wrote, so the parser meets anything:
text that is not YAML, YAML that is not a mapping, the right fields with wrong types,
numbers too big for any column, dates YAML reads as datetimes, nesting deeper than
the stack. Whatever the file, ``build_spec`` returns a ``JobSpec`` or raises
``CliError`` with one line; any other exception would reach the user as a traceback.
The same holds for the flags (sizes, durations, signals, env entries) and for the
pydantic model alone, which is what the API validates a submitted spec with. A
handful of bad files also go through ``corral submit`` as a process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from scheduler.cli.config import CliError
from scheduler.cli.spec_input import SpecFlags, build_spec, format_validation_error
from scheduler.cli.templates import WORKLOADS
from scheduler.domain.spec import JobSpec
from tests.fuzz import examples

pytestmark = pytest.mark.fuzz

DEFAULT_EXAMPLES = 300  # per test
FIELDS = sorted(JobSpec.model_fields)
RESOURCE_FIELDS = ["gpus", "nodes", "gpu_type", "gpu_memory_mib", "cpus", "memory_mib"]
# words a person may write where a number, size, duration or signal goes
WORDS = ["16G", "1.5TiB", "1h30m", "2d", "USR1@60", "KILL@5", "SIG10@1", "0", "-1", "nan", ""]


FUZZ = settings(
    max_examples=examples(DEFAULT_EXAMPLES),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

huge_ints = st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**30, 10**400])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(WORDS),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS + RESOURCE_FIELDS), st.text()), inner,
                        max_size=4),
    ),
    max_leaves=12,
)  # fmt: skip
resources = st.dictionaries(st.sampled_from(RESOURCE_FIELDS), values, max_size=4)
documents = st.dictionaries(
    st.sampled_from(FIELDS),
    st.one_of(values, resources, st.sampled_from(WORDS)),
    max_size=6,
)


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True)


# YAML text: documents of spec-like fields, any value as a document, arbitrary text,
# and documents with a line of raw text spliced in (mostly no longer valid YAML)
yaml_texts = st.one_of(
    documents.map(_dump),
    values.map(_dump),
    st.text(max_size=200),
    st.tuples(documents.map(_dump), st.text(max_size=40)).map(lambda p: p[0] + p[1]),
    st.sampled_from(
        [
            "name: 2001-02-30\ncommand: [a]\n",  # a date YAML reads, but no such day
            f"command: [a]\ntime_limit_s: {'9' * 5000}\n",  # past int's digit limit
            f"command: [a]\nresources: {{memory_mib: '{'9' * 400}G'}}\n",  # a float's inf
            "[" * 3000,  # deeper than the stack
            "command: !!binary 'not base64'\n",
            "? [a, b]\n: c\n",  # an unhashable key
            "command: &a [*a]\n",  # an alias to itself
        ]
    ),
)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("spec") / "job.yaml"


def assert_one_clean_line(error: CliError) -> None:
    message = error.format_message()
    assert message and "\n" not in message and "\r" not in message, repr(message)
    assert "Traceback" not in message, message


def _parse(path: Path, flags: SpecFlags, command: tuple[str, ...], workload: str | None) -> None:
    """build_spec's outcome must be a JobSpec or one clean CliError line."""
    try:
        spec = build_spec(path, flags, command, workload)
    except CliError as error:
        assert_one_clean_line(error)
    else:
        assert isinstance(spec, JobSpec)


commands = st.sampled_from([(), ("python", "train.py"), ("echo hi",)])
workloads = st.sampled_from([None, *sorted(WORKLOADS)])


@FUZZ
@given(text=yaml_texts, command=commands, workload=workloads)
def test_any_file_gives_a_spec_or_one_clean_error(
    spec_file: Path, text: str, command: tuple[str, ...], workload: str | None
) -> None:
    spec_file.write_text(text, encoding="utf-8", errors="surrogatepass")
    _parse(spec_file, SpecFlags(), command, workload)


@FUZZ
@given(data=st.binary(max_size=200))
def test_any_bytes_give_a_spec_or_one_clean_error(spec_file: Path, data: bytes) -> None:
    spec_file.write_bytes(data)
    _parse(spec_file, SpecFlags(), ("python", "train.py"), None)


words = st.one_of(st.sampled_from(WORDS), st.text(max_size=20), huge_ints.map(str))
flag_sets = st.builds(
    SpecFlags,
    name=st.none() | st.text(max_size=20),
    queue=st.none() | st.text(max_size=20),
    gpus=st.none() | st.integers() | huge_ints,
    nodes=st.none() | st.integers(),
    gpu_type=st.none() | st.text(max_size=20),
    gpu_memory=st.none() | words,
    cpus=st.none() | st.floats(),
    memory=st.none() | words,
    priority=st.none() | st.integers() | huge_ints,
    time_limit=st.none() | words,
    max_retries=st.none() | st.integers(),
    retry_on_exit_codes=st.lists(st.integers() | huge_ints, max_size=3),
    signal=st.none() | words,
    grace_period=st.none() | words,
    env=st.lists(st.text(max_size=20), max_size=3),
    workdir=st.none() | st.text(max_size=20),
)


@FUZZ
@given(document=documents, flags=flag_sets, command=commands)
def test_any_flags_over_any_file_give_a_spec_or_one_clean_error(
    spec_file: Path, document: dict[str, Any], flags: SpecFlags, command: tuple[str, ...]
) -> None:
    spec_file.write_text(_dump(document), encoding="utf-8")
    _parse(spec_file, flags, command, None)


@FUZZ
@given(document=st.one_of(documents, values))
def test_the_model_alone_refuses_with_a_validation_error(document: Any) -> None:
    """The API's path: JSON-like input into JobSpec; only ValidationError may come out."""
    try:
        JobSpec.model_validate(document)
    except ValidationError as error:
        message = format_validation_error(error)
        assert message and "\n" not in message, repr(message)


BAD_FILES = {
    "not-yaml.yaml": "command: [python\n  - oops: {",
    "a-list.yaml": "- python\n- train.py\n",
    "wrong-type.yaml": "command: [python]\nresources: {gpus: lots}\n",
    "huge.yaml": f"command: [python]\npriority: {10**30}\n",
    "bad-date.yaml": "command: [python]\nname: 2001-02-30\n",
    "deep.yaml": "[" * 3000,
}


@pytest.mark.slow
def test_corral_submit_with_a_bad_file_prints_one_error_line(tmp_path: Path) -> None:
    """As a process: the spec is refused before any server is asked, so none is needed."""
    env = {**os.environ, "CORRAL_SERVER": "http://127.0.0.1:9", "CORRAL_TOKEN": "unused"}
    files = {**BAD_FILES}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "not-utf8.yaml").write_bytes(b"command: [\xff\xfe]\n")
    for path in sorted(tmp_path.iterdir()):
        done = subprocess.run(
            [sys.executable, "-m", "scheduler.cli.main", "submit", "-f", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0, (path.name, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, (path.name, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (path.name, done.stderr)
        assert done.stdout == "", (path.name, done.stdout)
