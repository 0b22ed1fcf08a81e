"""``corral demo`` as a user runs it: trains BERT and ResNet, preempts and resumes one."""

from __future__ import annotations

import re
import subprocess

import pytest

from scheduler.localcluster import corral_argv

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_demo_trains_preempts_resumes_and_reports_metrics() -> None:
    pytest.importorskip("torch")
    done = subprocess.run(
        corral_argv("demo"),
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "demo finished: every job ended as expected" in out
    assert re.search(r"resnet-train\s+stopping", out), out
    assert "attempt 1 preempted, attempt 2 succeeded (resumed from step" in out
    accuracy = {
        name: float(value)
        for name, value in re.findall(
            r"^  (bert-finetune|resnet-train)\s+accuracy ([0-9.]+)", out, re.M
        )
    }
    assert accuracy["bert-finetune"] > 0.58 and accuracy["resnet-train"] > 0.8, (
        accuracy
    )  # chance 0.5, 0.1
