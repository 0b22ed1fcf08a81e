"""The training loop alone (one process): epochs, checkpoints, stop, resume, progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

from workloads.checkpoint import load_checkpoint, newest_checkpoint  # noqa: E402
from workloads.loop import Alone, Arrays, LoopConfig, run_loop  # noqa: E402
from workloads.progress import read_progress  # noqa: E402
from workloads.resnet import ResNetConfig  # noqa: E402
from workloads.stop import StopSignal  # noqa: E402


class StopAfter(StopSignal):
    """Requested once ``steps`` checks were made (one check per training step)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.left = steps

    def requested(self) -> bool:
        self.left -= 1
        return self.left < 0


def toy_data(n: int = 96) -> Arrays:
    """Two classes a ResNet tells apart at once: dark and bright 8x8 images."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    x = (rng.random((n, 1, 8, 8)) * 0.3 + 0.6 * y[:, None, None, None]).astype(np.float32)
    return Arrays(x[: n // 2 * 1], y[: n // 2].astype(np.int64), x[n // 2 :], y[n // 2 :])


def config(tmp_path: Path, **fields: object) -> LoopConfig:
    base = {
        "workload": "resnet",
        "model_config": ResNetConfig(num_classes=2, width=4).to_dict(),
        "label_names": ("dark", "bright"),
        "checkpoint_dir": str(tmp_path),
        "epochs": 3,
        "batch_size": 8,
        "checkpoint_every": 4,
        "attempt": 1,
    }
    return LoopConfig(**{**base, **fields})  # type: ignore[arg-type]


def test_a_full_run_evaluates_each_epoch_and_checkpoints(tmp_path: Path) -> None:
    result = run_loop(config(tmp_path), toy_data(), Alone(), StopSignal())
    assert result.completed and not result.stopped
    assert (result.step, result.epoch) == (18, 3)  # 48 examples / 8 = 6 steps an epoch
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    history = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert {"accuracy", "precision", "recall", "f1", "loss"} <= set(history[-1])
    assert history[-1]["loss"] < history[0]["loss"]
    progress = read_progress(tmp_path)
    assert progress is not None and (progress.step, progress.epoch) == (18, 3)
    assert progress.last_checkpoint_step == 18 and progress.last_checkpoint_at is not None
    assert progress.metrics["accuracy"] == result.metrics["accuracy"]


def test_a_stop_checkpoints_and_the_next_run_resumes_there(tmp_path: Path) -> None:
    stopped = run_loop(config(tmp_path, attempt=1), toy_data(), Alone(), StopAfter(7))
    assert stopped.stopped and not stopped.completed and stopped.step == 8
    newest = newest_checkpoint(tmp_path)
    assert newest is not None and newest.name == "step-00000008"
    state = load_checkpoint(newest)
    assert (state["epoch"], state["batch"]) == (1, 2)  # epoch 1 is in progress, 2 batches in

    resumed = run_loop(config(tmp_path, attempt=2), toy_data(), Alone(), StopSignal())
    assert resumed.completed and resumed.resumed_from_step == 8 and resumed.step == 18
    assert resumed.samples == (18 - 8) * 8  # only what this run trained
    progress = read_progress(tmp_path)
    assert progress is not None and (progress.attempt, progress.resumed_from_step) == (2, 8)


def test_max_steps_ends_a_run_as_completed(tmp_path: Path) -> None:
    result = run_loop(config(tmp_path, max_steps=5), toy_data(), Alone(), StopSignal())
    assert result.completed and result.step == 5 and "accuracy" in result.metrics


def test_the_stop_file_is_a_stop(tmp_path: Path) -> None:
    stop_file = tmp_path / "stop"
    stop = StopSignal(str(stop_file))
    assert not stop.requested()
    stop_file.touch()
    assert stop.requested()
    result = run_loop(config(tmp_path / "ck"), toy_data(), Alone(), stop)
    assert result.stopped and result.step == 1


def test_a_run_that_ended_before_its_attempt_did_keeps_its_metrics(tmp_path: Path) -> None:
    """Lost after the last checkpoint: the next attempt trains nothing but still reports."""
    finished = run_loop(config(tmp_path, attempt=1), toy_data(), Alone(), StopSignal())
    again = run_loop(config(tmp_path, attempt=2), toy_data(), Alone(), StopSignal())
    assert again.completed and again.samples == 0 and again.resumed_from_step == 18
    assert again.metrics == finished.metrics
    progress = read_progress(tmp_path)
    assert progress is not None and progress.metrics == finished.metrics
