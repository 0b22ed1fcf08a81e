"""Batch inference in one process: one prediction per input, in input order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from workloads import infer  # noqa: E402
from workloads.checkpoint import build_model, save_checkpoint  # noqa: E402
from workloads.resnet import ResNetConfig  # noqa: E402


def test_every_held_out_digit_gets_one_line(tmp_path: Path) -> None:
    config = ResNetConfig(num_classes=10, width=4).to_dict()
    state = {
        "model": build_model("resnet", config).state_dict(),
        "workload": "resnet",
        "model_config": config,
        "label_names": [str(i) for i in range(10)],
    }
    save_checkpoint(tmp_path / "job", 1, state)
    output = tmp_path / "out" / "predictions.jsonl"
    argv = [f"--checkpoint={tmp_path / 'job'}", "--data=digits", f"--output={output}"]
    assert infer.main([*argv, "--limit=200", "--backend=local"]) == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["index"] for line in lines] == list(range(40))  # 20 % of 200
    assert all(line["prediction"] in state["label_names"] and "label" in line for line in lines)
    summary = json.loads(Path(f"{output}.summary.json").read_text())
    assert summary["count"] == 40 and 0.0 <= summary["accuracy"] <= 1.0


def test_a_missing_checkpoint_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [f"--checkpoint={tmp_path}", "--data=digits", f"--output={tmp_path / 'o.jsonl'}"]
    assert infer.main(argv) == 2
    assert "no checkpoint" in capsys.readouterr().err
