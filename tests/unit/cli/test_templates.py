"""Workload templates and the example job files: both make valid job specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.cli.spec_input import SpecFlags, load_spec_file, merge_flags
from scheduler.cli.templates import WORKLOADS, workload_fields
from scheduler.domain.spec import JobSpec

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_a_template_is_a_ray_job_running_its_module(name: str) -> None:
    spec = JobSpec.model_validate(workload_fields(name, ["--epochs", "2"]))
    assert spec.ray and spec.name == name
    assert spec.argv() == ["python", "-m", f"workloads.{name}", "--epochs", "2"]
    assert spec.resources.gpus >= 1 and spec.resources.memory_mib


def test_flags_win_over_the_template() -> None:
    fields = merge_flags(workload_fields("bert", []), SpecFlags(gpus=2, nodes=2, name="mine"))
    spec = JobSpec.model_validate(fields)
    assert (spec.name, spec.resources.gpus, spec.resources.nodes) == ("mine", 2, 2)
    assert spec.resources.cpus == 4  # the template's, where no flag was given


def test_an_unknown_workload_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="bert, resnet, infer"):
        workload_fields("gpt", [])


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_each_workload_has_a_valid_example(name: str) -> None:
    spec = JobSpec.model_validate(load_spec_file(EXAMPLES / f"{name}.yaml"))
    assert spec.ray and spec.argv()[:3] == ["python", "-m", f"workloads.{name}"]


def test_submit_workload_flag_builds_the_template_under_file_and_flags() -> None:
    from scheduler.cli.spec_input import SpecFlags, build_spec

    spec = build_spec(None, SpecFlags(gpus=2), ("--data", "digits"), workload="resnet")
    assert spec.ray is True
    assert spec.argv()[:3] == ["python", "-m", "workloads.resnet"]
    assert spec.argv()[3:] == ["--data", "digits"]
    assert spec.resources.gpus == 2  # the flag wins over the template
