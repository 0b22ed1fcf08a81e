"""Checkpoint save/load round trips, the newest one, pruning, half-written ones."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from workloads.checkpoint import (  # noqa: E402
    build_model,
    checkpoint_step,
    load_checkpoint,
    newest_checkpoint,
    save_checkpoint,
)
from workloads.resnet import ResNetConfig  # noqa: E402


def test_a_model_round_trips(tmp_path: Path) -> None:
    config = ResNetConfig(num_classes=3, width=4).to_dict()
    model = build_model("resnet", config)
    state = {"model": model.state_dict(), "step": 7, "label_names": ["a", "b", "c"]}
    path = save_checkpoint(tmp_path, 7, state)
    loaded = load_checkpoint(path)
    again = build_model("resnet", config)
    again.load_state_dict(loaded["model"])
    x = torch.rand(2, 1, 8, 8)
    model.eval()
    again.eval()
    assert torch.equal(model(x), again(x))
    assert loaded["step"] == 7 and loaded["label_names"] == ["a", "b", "c"]


def test_the_newest_is_the_highest_step_and_old_ones_go(tmp_path: Path) -> None:
    for step in (5, 20, 10):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    newest = newest_checkpoint(tmp_path)
    assert newest is not None and checkpoint_step(newest) == 20
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-00000010", "step-00000020"]
    assert load_checkpoint(tmp_path)["step"] == 20  # a job's dir means its newest


def test_a_half_written_checkpoint_is_never_the_newest(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 3, {"step": 3})
    (tmp_path / "checkpoints" / ".tmp-step-00000009-1-2").mkdir()
    (tmp_path / "checkpoints" / "step-00000009").mkdir()  # no state.pt: incomplete
    newest = newest_checkpoint(tmp_path)
    assert newest is not None and checkpoint_step(newest) == 3


def test_no_checkpoint(tmp_path: Path) -> None:
    assert newest_checkpoint(tmp_path) is None
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path)
