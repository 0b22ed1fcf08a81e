"""Building a JobSpec from a YAML file and flags: order, command forms, clean errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.cli.config import CliError
from scheduler.cli.spec_input import SpecFlags, build_spec, command_from_args, parse_env
from scheduler.domain.spec import JobSpec

from .conftest import Cli


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


JOB_YAML = """\
name: from-file
queue: research
command: [python, train.py, --epochs, 3]
env: {SEED: 1, MODE: file}
resources: {gpus: 4, gpu_type: A100-80GB, memory_mib: 64G}
time_limit_s: 1h
priority: 5
"""


def test_flags_override_the_file_field_by_field(tmp_path: Path) -> None:
    flags = SpecFlags(gpus=2, priority=7, env=("MODE=flag", "EXTRA=x=y"), time_limit="2h")
    spec = build_spec(write(tmp_path, JOB_YAML), flags, ())
    assert spec.name == "from-file" and spec.queue == "research"
    assert spec.command == ["python", "train.py", "--epochs", "3"]
    assert spec.resources.gpus == 2  # the flag
    assert spec.resources.gpu_type == "A100-80GB"  # kept from the file
    assert spec.resources.memory_mib == 64 * 1024
    assert spec.priority == 7 and spec.time_limit_s == 7200
    assert spec.env == {"SEED": "1", "MODE": "flag", "EXTRA": "x=y"}


def test_a_command_after_the_flags_replaces_the_files(tmp_path: Path) -> None:
    spec = build_spec(write(tmp_path, JOB_YAML), SpecFlags(), ("echo", "hi"))
    assert spec.command == ["echo", "hi"]


def test_every_flag_lands_in_its_field() -> None:
    flags = SpecFlags(
        name="n",
        queue="q",
        gpus=2,
        nodes=3,
        gpu_type="H100",
        gpu_memory="40G",
        cpus=8.5,
        memory="1T",
        priority=-3,
        time_limit="1h30m",
        max_retries=2,
        preemptible=False,
        ray=True,
        grace_period="2m",
        workdir="/work",
    )
    spec = build_spec(None, flags, ("python", "x.py"))
    r = spec.resources
    assert (r.gpus, r.nodes, r.gpu_type, r.gpu_memory_mib, r.cpus, r.memory_mib) == (
        2,
        3,
        "H100",
        40960,
        8.5,
        1024 * 1024,
    )
    assert (spec.name, spec.queue, spec.priority, spec.time_limit_s, spec.max_retries) == (
        "n",
        "q",
        -3,
        5400,
        2,
    )
    assert (spec.preemptible, spec.ray, spec.grace_period_s, spec.workdir) == (
        False,
        True,
        120,
        "/work",
    )


def test_one_argument_with_whitespace_is_a_shell_string() -> None:
    assert command_from_args(["echo hi && sleep 1"]) == "echo hi && sleep 1"
    assert command_from_args(["python", "train.py", "--lr", "3e-4"]) == [
        "python",
        "train.py",
        "--lr",
        "3e-4",
    ]
    assert command_from_args(["nvidia-smi"]) == ["nvidia-smi"]


def test_env_needs_key_equals_value() -> None:
    assert parse_env(["A=1", "B="]) == {"A": "1", "B": ""}
    with pytest.raises(CliError, match="--env expects KEY=VALUE, got 'A'"):
        parse_env(["A"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [unclosed\n", "job.yaml:2: invalid YAML: "),
        ("command: x\n  bad: indent: here\n", "job.yaml:2: invalid YAML: "),
        ("- just\n- a list\n", "job.yaml: a job file must be a mapping of fields, not a list"),
        ("command: x\ngpus: 2\n", "invalid job spec: gpus: Extra inputs are not permitted"),
        ("resources: 3\ncommand: x\n", "invalid job spec: resources: "),
        ("command: x\nname: 2001-02-30\n", "job.yaml: invalid YAML value: day is out of range"),
        (f"command: x\npriority: {'9' * 5000}\n", "job.yaml: invalid YAML value: "),
        ("[" * 5000, "job.yaml: invalid YAML: nested too deeply"),
        ("command: x\x1f\n", "job.yaml: invalid YAML: the character #x001f at position 10"),
        ('command: x\n"A\\nB": 1\n', "invalid job spec: 'A\\nB': Extra inputs are not permitted"),
        (f"command: x\ntime_limit_s: '{'9' * 5000}'\n", "time_limit_s: too large: '999"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CliError) as caught:
        build_spec(write(tmp_path, text), SpecFlags(), ())
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(b"command: [\xff]\n")
    with pytest.raises(CliError, match=r"job.yaml: not UTF-8 text \(byte 10 cannot be decoded\)"):
        build_spec(path, SpecFlags(), ())


def test_a_workload_with_resources_that_are_not_a_mapping_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="invalid job spec: resources: must be a mapping"):
        build_spec(write(tmp_path, "resources: 4\n"), SpecFlags(), ("--epochs", "1"), "bert")


def test_no_command_says_where_to_put_it() -> None:
    with pytest.raises(CliError, match="no command: give it after `--`"):
        build_spec(None, SpecFlags(gpus=1), ())


def test_negative_gpus_is_one_line_and_exit_1(corral: Cli) -> None:
    result = corral("submit", "-g", "-1", "--", "python", "train.py")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: invalid job spec: resources.gpus: Input should be greater than or equal to 0\n"
    )
    assert corral.fake.jobs == {}  # the server refused it: nothing was stored


def test_several_problems_share_the_line(corral: Cli) -> None:
    result = corral("submit", "-g", "-1", "--priority", "5000", "--", "x")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "resources.gpus:" in result.stderr and "priority:" in result.stderr


def test_bad_sizes_and_durations_name_the_field(corral: Cli) -> None:
    result = corral("submit", "--gpu-memory", "lots", "--", "x")
    assert result.exit_code == 1
    assert "resources.gpu_memory_mib: not a size: 'lots'" in result.stderr
    result = corral("submit", "--grace-period", "soon", "--", "x")
    assert "grace_period_s: not a duration: 'soon'" in result.stderr


def test_bad_yaml_through_the_cli_names_file_and_line(corral: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "command: [a, b\nname: x\n")
    result = corral("submit", "-f", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {path}:")
    assert "invalid YAML" in result.stderr and "Traceback" not in result.output


def test_a_missing_file_is_a_usage_error(corral: Cli, tmp_path: Path) -> None:
    result = corral("submit", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2


def test_retry_and_notice_flags_reach_the_server(corral: Cli) -> None:
    result = corral(
        "submit",
        "--max-retries",
        "3",
        "--retry-on-exit-code",
        "75",
        "--retry-on-exit-code",
        "-9",
        "--retry-on-timeout",
        "--time-limit",
        "2h",
        "--signal",
        "USR1@60",
        "--",
        "python",
        "train.py",
    )
    assert result.exit_code == 0, result.output
    body = corral.fake.bodies("POST", "/api/v1/jobs")[0]
    assert body["signal"] == "USR1@60"  # sent as typed: the server parses and checks it
    spec = JobSpec.model_validate(body)  # what the server stores
    assert spec.retry_on_exit_codes == [-9, 75]
    assert spec.retry_on_timeout is True
    assert spec.time_limit_s == 7200
    assert spec.signal is not None and (spec.signal.name, spec.signal.notice_s) == ("USR1", 60)


def test_flags_override_the_files_retry_and_notice_fields(tmp_path: Path) -> None:
    text = "command: x\nretry_on_exit_codes: [1]\nretry_on_timeout: true\nsignal: USR2@30\n"
    spec = build_spec(
        write(tmp_path, text),
        SpecFlags(retry_on_exit_codes=(75,), retry_on_timeout=False, signal="HUP@5"),
        (),
    )
    assert (spec.retry_on_exit_codes, spec.retry_on_timeout, str(spec.signal)) == (
        [75],
        False,
        "HUP@5",
    )
    kept = build_spec(write(tmp_path, text), SpecFlags(), ())
    assert (kept.retry_on_exit_codes, kept.retry_on_timeout, str(kept.signal)) == (
        [1],
        True,
        "USR2@30",
    )


def test_a_bad_signal_is_one_line(corral: Cli) -> None:
    result = corral("submit", "--signal", "KILL@60", "--", "x")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid job spec: signal.name: SIGKILL cannot be")
    assert result.stderr.count("\n") == 1
    assert corral.fake.jobs == {}
