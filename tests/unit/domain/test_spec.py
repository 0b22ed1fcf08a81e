"""JobSpec, Resources and QueueSpec: what is accepted, and what is refused by field name."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from scheduler.domain.spec import JobSpec, QueuePatch, QueueSpec, Resources


def error_locs(raised: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str | int, ...]]:
    return [tuple(e["loc"]) for e in raised.value.errors()]


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("16G", 16_384),
        ("16GiB", 16_384),
        ("16gb", 16_384),
        ("512M", 512),
        ("512MiB", 512),
        ("512", 512),
        (" 1.5 G ", 1_536),
        ("1T", 1_048_576),
        (2_048, 2_048),
    ],
)
def test_sizes(text: str | int, mib: int) -> None:
    resources = Resources.model_validate({"gpu_memory_mib": text, "memory_mib": text})
    assert resources.gpu_memory_mib == mib
    assert resources.memory_mib == mib


HUGE_DIGITS = "9" * 5000  # past int()'s digit limit and a float's range


@pytest.mark.parametrize(
    "bad", ["16PB", "G16", "lots", "-1G", "", "0", "0.1M", 0, "2000000T", f"{HUGE_DIGITS}G", "²G"]
)
def test_bad_sizes_name_the_field(bad: str | int) -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec.model_validate({"command": ["x"], "resources": {"gpu_memory_mib": bad}})
    assert error_locs(raised) == [("resources", "gpu_memory_mib")]
    assert "resources.gpu_memory_mib" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("45s", 45),
        ("30m", 1_800),
        ("1h30m", 5_400),
        ("1h 30m", 5_400),
        ("2d", 172_800),
        ("2H", 7_200),
        (600, 600),
    ],
)
def test_durations(text: str | int, seconds: int) -> None:
    assert JobSpec.model_validate({"command": ["x"], "time_limit_s": text}).time_limit_s == seconds


@pytest.mark.parametrize(
    "bad",
    ["1.5h", "abc", "h", "1h30", "30x", "-5", "0", "", 0, -1, HUGE_DIGITS, "9" * 30 + "s", "²"],
)
def test_bad_durations_name_the_field(bad: str | int) -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec.model_validate({"command": ["x"], "time_limit_s": bad})
    assert error_locs(raised) == [("time_limit_s",)]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"resources": {"gpus": -1}}, ("resources", "gpus")),
        ({"resources": {"gpus": 65}}, ("resources", "gpus")),
        ({"resources": {"nodes": 0}}, ("resources", "nodes")),
        ({"resources": {"gpu_type": ""}}, ("resources", "gpu_type")),
        ({"resources": {"cpus": 0}}, ("resources", "cpus")),
        ({"priority": 1001}, ("priority",)),
        ({"max_retries": -1}, ("max_retries",)),
        ({"grace_period_s": 3601}, ("grace_period_s",)),
        ({"name": "-starts-with-dash"}, ("name",)),
        ({"name": "has space"}, ("name",)),
        ({"queue": "a/b"}, ("queue",)),
        ({"workdir": "relative/dir"}, ("workdir",)),
        ({"command": ""}, ("command",)),
        ({"command": "   "}, ("command",)),
        ({"command": []}, ("command",)),
        ({"command": [""]}, ("command",)),
    ],
)
def test_bad_values_name_the_field(fields: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec.model_validate({"command": ["x"], **fields})
    assert loc in error_locs(raised)


@pytest.mark.parametrize(
    "fields",
    [{"gpu": 1}, {"resources": {"gpu": 1}}, {"resources": {"gpus": 1, "tpus": 2}}],
)
def test_unknown_fields_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec.model_validate({"command": ["x"], **fields})
    assert raised.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    "key", ["CORRAL_JOB_ID", "CORRAL_ANYTHING", "CUDA_VISIBLE_DEVICES", "RAY_ADDRESS"]
)
def test_reserved_env_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec(command=["x"], env={key: "1"})
    assert error_locs(raised) == [("env",)]
    assert f"{key} is set by corral" in str(raised.value)


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", ""])
def test_malformed_env_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec(command=["x"], env={key: "1"})
    assert error_locs(raised) == [("env",)]


def test_ordinary_env_is_kept() -> None:
    env = {"NCCL_DEBUG": "INFO", "_private": "1", "PYTHONUNBUFFERED": "1"}
    assert JobSpec(command=["x"], env=env).env == env


def test_a_multi_node_job_must_ask_for_gpus() -> None:
    with pytest.raises(ValidationError, match="multi-node job must ask for GPUs"):
        JobSpec.model_validate({"command": ["x"], "resources": {"gpus": 0, "nodes": 2}})
    assert JobSpec.model_validate({"command": ["x"], "resources": {"gpus": 0}}).resources.gpus == 0


def test_defaults() -> None:
    spec = JobSpec(command=["python", "train.py"])
    assert spec.queue == "default"
    assert spec.resources == Resources(gpus=1, nodes=1)
    assert spec.resources.total_gpus == 1
    assert (spec.priority, spec.max_retries, spec.grace_period_s) == (0, 0, 30)
    assert spec.preemptible and not spec.ray and spec.time_limit_s is None


def test_total_gpus() -> None:
    assert Resources(gpus=4, nodes=3).total_gpus == 12


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (["python", "train.py", "--lr", "1e-4"], ["python", "train.py", "--lr", "1e-4"]),
        (
            "python train.py > out.txt && echo done",
            ["/bin/sh", "-c", "python train.py > out.txt && echo done"],
        ),
        (["echo", "a b; rm -rf /"], ["echo", "a b; rm -rf /"]),  # argv: no shell at all
    ],
)
def test_argv(command: list[str] | str, argv: list[str]) -> None:
    assert JobSpec(command=command).argv() == argv


def test_argv_is_a_copy() -> None:
    spec = JobSpec(command=["python"])
    spec.argv().append("--evil")
    assert spec.argv() == ["python"]


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"name": "bert-large", "command": ["python"]}, "bert-large"),
        ({"command": ["python", "train.py"]}, "python"),
        ({"command": ["/usr/bin/python3", "-m", "x"]}, "python3"),
        ({"command": "python train.py --epochs 3"}, "python"),
        ({"command": "./scripts/run.sh"}, "run.sh"),
        ({"command": "'/opt/my tool/run' --x"}, "run"),
        ({"command": ["my tool!"]}, "my-tool-"),
        ({"command": ["...."]}, "job"),
    ],
)
def test_display_name(fields: dict[str, Any], name: str) -> None:
    assert JobSpec.model_validate(fields).display_name() == name


def test_display_name_never_raises_for_an_accepted_command() -> None:
    assert JobSpec(command='echo "unbalanced').display_name() == "echo"


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"name": "ml", "weight": 0}, ("weight",)),
        ({"name": "ml", "guaranteed_gpus": -1}, ("guaranteed_gpus",)),
        ({"name": "ml", "borrow_limit_gpus": -1}, ("borrow_limit_gpus",)),
        ({"name": "bad name"}, ("name",)),
        ({"name": "ml", "max_gpu": 4}, ("max_gpu",)),
    ],
)
def test_bad_queue_specs_name_the_field(fields: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as raised:
        QueueSpec.model_validate(fields)
    assert loc in error_locs(raised)


def test_queue_cap_may_not_be_below_its_guarantee() -> None:
    with pytest.raises(ValidationError, match="max_gpus must not be below guaranteed_gpus"):
        QueueSpec(name="ml", guaranteed_gpus=8, max_gpus=4)
    assert QueueSpec(name="ml", guaranteed_gpus=8, max_gpus=8).max_gpus == 8


def test_queue_patch_leaves_out_what_is_not_given() -> None:
    patch = QueuePatch.model_validate({"weight": 2})
    assert patch.model_dump(exclude_unset=True) == {"weight": 2.0}
    with pytest.raises(ValidationError):
        QueuePatch.model_validate({"name": "renamed"})


def test_specs_are_frozen() -> None:
    spec = JobSpec(command=["x"])
    with pytest.raises(ValidationError):
        spec.priority = 5  # type: ignore[misc]


def test_a_queue_names_its_org_and_its_type_quotas() -> None:
    spec = QueueSpec.model_validate(
        {
            "name": "vision",
            "parent": "ml",
            "type_quotas": [{"gpu_type": "A100-80GB", "guaranteed_gpus": 4, "max_gpus": 8}],
        }
    )
    assert spec.parent == "ml"
    assert (spec.type_quotas[0].gpu_type, spec.type_quotas[0].max_gpus) == ("A100-80GB", 8)
    assert QueueSpec(name="ml").type_quotas == []


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"parent": "vision"}, ("parent",)),  # its own parent
        ({"parent": "a b"}, ("parent",)),
        (
            {"type_quotas": [{"gpu_type": "L4", "guaranteed_gpus": -1}]},
            ("type_quotas", 0, "guaranteed_gpus"),
        ),
        ({"type_quotas": [{"gpu_type": "L4", "max_gpus": -1}]}, ("type_quotas", 0, "max_gpus")),
        (
            {"type_quotas": [{"gpu_type": "L4", "guaranteed_gpus": 4, "max_gpus": 2}]},
            ("type_quotas", 0),
        ),
        ({"type_quotas": [{"gpu_type": "L4"}, {"gpu_type": "l4"}]}, ("type_quotas",)),
        ({"type_quotas": [{"gpu_type": ""}]}, ("type_quotas", 0, "gpu_type")),
        (
            {"type_quotas": [{"gpu_type": "L4", "guaranteed_gpus": 2**31}]},
            ("type_quotas", 0, "guaranteed_gpus"),
        ),
        ({"type_quotas": [{"gpu_type": "L4", "cap": 1}]}, ("type_quotas", 0, "cap")),
    ],
)
def test_bad_orgs_and_type_quotas_name_the_field(
    fields: dict[str, Any], loc: tuple[str | int, ...]
) -> None:
    with pytest.raises(ValidationError) as raised:
        QueueSpec.model_validate({"name": "vision", **fields})
    assert error_locs(raised) == [loc]


def test_a_patch_may_clear_the_parent_and_replace_the_type_quotas() -> None:
    assert QueuePatch.model_validate({"parent": None}).model_dump(exclude_unset=True) == {
        "parent": None
    }
    patch = QueuePatch.model_validate({"type_quotas": [{"gpu_type": "L4", "guaranteed_gpus": 2}]})
    assert patch.type_quotas is not None and patch.type_quotas[0].guaranteed_gpus == 2
    with pytest.raises(ValidationError) as raised:
        QueuePatch.model_validate({"type_quotas": [{"gpu_type": "L4"}, {"gpu_type": "L4"}]})
    assert error_locs(raised) == [("type_quotas",)]


@pytest.mark.parametrize(
    ("given", "name", "notice_s"),
    [
        ("USR1@60", "USR1", 60),
        ("sigusr2@1", "USR2", 1),
        (" TERM @ 3600 ", "TERM", 3600),
        ("10@30", "USR1", 30),  # a number with a name is stored as the name
        ("40@30", "40", 30),  # a real-time signal stays a number
        ({"name": "HUP", "notice_s": 5}, "HUP", 5),
    ],
)
def test_a_signal_notice_is_stored_parsed(given: Any, name: str, notice_s: int) -> None:
    spec = JobSpec(command=["x"], signal=given)
    assert spec.signal is not None
    assert (spec.signal.name, spec.signal.notice_s) == (name, notice_s)
    stored = spec.model_dump(mode="json")["signal"]
    assert stored == {"name": name, "notice_s": notice_s}
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("USR1", "use e.g. USR1@60"),
        ("USR1@", "use e.g. USR1@60"),
        ("FOO@5", "unknown signal 'FOO'"),
        ("KILL@5", "SIGKILL cannot be caught"),
        ("19@5", "SIGSTOP cannot be caught"),
        ("0@5", "no signal number 0"),
        ("65@5", "no signal number 65"),
        ("USR1@0", "greater than or equal to 1"),
        ("USR1@3601", "less than or equal to 3600"),
    ],
)
def test_a_bad_signal_notice_names_the_field(bad: str, says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec.model_validate({"command": ["x"], "signal": bad})
    assert error_locs(raised)[0][0] == "signal"
    assert says in str(raised.value)


def test_the_notice_must_come_before_the_time_limit() -> None:
    with pytest.raises(ValidationError, match=r"notice \(60s\) must come before the time limit"):
        JobSpec(command=["x"], signal="USR1@60", time_limit_s=60)
    assert JobSpec(command=["x"], signal="USR1@60", time_limit_s=61).signal is not None


def test_retry_on_exit_codes_are_kept_sorted_and_distinct() -> None:
    spec = JobSpec(command=["x"], retry_on_exit_codes=[137, 75, 137])
    assert spec.retry_on_exit_codes == [75, 137]
    assert JobSpec(command=["x"]).retry_on_exit_codes is None
    assert not JobSpec(command=["x"]).retry_on_timeout


@pytest.mark.parametrize(
    ("codes", "says"), [([0], "exit code 0 is a success"), ([256], "out of range")]
)
def test_bad_retry_exit_codes_name_the_field(codes: list[int], says: str) -> None:
    with pytest.raises(ValidationError) as raised:
        JobSpec(command=["x"], retry_on_exit_codes=codes)
    assert error_locs(raised) == [("retry_on_exit_codes",)]
    assert says in str(raised.value)


@pytest.mark.parametrize(
    ("codes", "code", "retried"),
    [
        (None, 1, True),
        (None, None, True),  # a launch failure
        ([75], 75, True),
        ([75], 1, False),
        ([75], None, False),
        ([137], -9, True),  # killed by SIGKILL is the shell's 137
        ([-9], -9, True),
        ([137], 9, False),
    ],
)
def test_which_exit_codes_are_retried(
    codes: list[int] | None, code: int | None, retried: bool
) -> None:
    assert JobSpec(command=["x"], retry_on_exit_codes=codes).retries_exit_code(code) is retried
