"""Job templates for the bundled workloads: ``corral submit --workload bert -- ARGS``.

A template is the base layer of a job spec, under a ``-f`` file and the flags (which
win, as they win over a file): the name, the command ``python -m workloads.NAME ARGS``
(the arguments after ``--`` go to the workload), ``ray: true`` and resources that
suit the workload. ``python`` is the agent's interpreter: a Ray attempt's entrypoint
runs with the agent's Python first on ``PATH`` (``agents.raysupervisor``), the one
Ray's workers run too, which must have the ``workloads`` extra installed.

    >>> workload_fields("resnet", ["--epochs", "3"])["command"]
    ['python', '-m', 'workloads.resnet', '--epochs', '3']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkloadTemplate:
    module: str
    summary: str
    resources: dict[str, Any] = field(default_factory=dict)
    grace_period_s: int = 60  # time to checkpoint on a stop (Ray teardown included)


WORKLOADS: dict[str, WorkloadTemplate] = {
    "bert": WorkloadTemplate(
        "workloads.bert",
        "text classification with a BERT-style encoder (Ray Train, DDP)",
        {"gpus": 1, "cpus": 4, "memory_mib": "16G"},
    ),
    "resnet": WorkloadTemplate(
        "workloads.resnet",
        "image classification with ResNet-18/34/50 (Ray Train, DDP)",
        {"gpus": 1, "cpus": 4, "memory_mib": "16G"},
    ),
    "infer": WorkloadTemplate(
        "workloads.infer",
        "batch inference of a checkpoint, one Ray task per GPU",
        {"gpus": 1, "cpus": 2, "memory_mib": "8G"},
        grace_period_s=30,
    ),
}


def workload_fields(name: str, args: Sequence[str]) -> dict[str, Any]:
    """The job-spec fields of workload ``name`` run with ``args``; ValueError if unknown."""
    try:
        template = WORKLOADS[name]
    except KeyError:
        known = ", ".join(WORKLOADS)
        raise ValueError(f"unknown workload {name!r} (one of {known})") from None
    return {
        "name": name,
        "command": ["python", "-m", template.module, *args],
        "ray": True,
        "resources": dict(template.resources),
        "grace_period_s": template.grace_period_s,
    }
