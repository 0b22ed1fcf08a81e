"""Classification metrics and the progress file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

from workloads.metrics import classification_metrics, confusion_matrix  # noqa: E402
from workloads.progress import Progress, read_progress, write_progress  # noqa: E402


def test_the_worked_example_of_the_module() -> None:
    m = classification_metrics(confusion_matrix([0, 0, 1, 1], [0, 0, 0, 1], 2))
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["support"] == 4


def test_a_class_never_predicted_counts_as_zero_precision() -> None:
    m = classification_metrics(confusion_matrix([0, 1, 2], [0, 0, 0], 3))
    assert m["precision"] == pytest.approx(1 / 3 / 3)
    assert m["recall"] == pytest.approx(1 / 3)


def test_matrices_of_shards_add_up_to_the_whole() -> None:
    truth, pred = [0, 1, 2, 2, 1], [0, 2, 2, 1, 1]
    whole = confusion_matrix(truth, pred, 3)
    parts = confusion_matrix(truth[::2], pred[::2], 3) + confusion_matrix(
        truth[1::2], pred[1::2], 3
    )
    assert (whole == parts).all()


def test_progress_round_trips(tmp_path: Path) -> None:
    written = Progress(step=12, epoch=1, last_checkpoint_at=5.5, last_checkpoint_step=10,
                       metrics={"accuracy": 0.5}, attempt=2, resumed_from_step=8)  # fmt: skip
    write_progress(tmp_path, written)
    read = read_progress(tmp_path)
    assert read is not None and read.updated_at > 0
    assert (read.step, read.epoch, read.last_checkpoint_step, read.resumed_from_step) == (
        12,
        1,
        10,
        8,
    )
    assert read.metrics == {"accuracy": 0.5}
    assert set(json.loads((tmp_path / "progress.json").read_text())) >= {
        "step", "epoch", "last_checkpoint_at", "metrics"
    }  # fmt: skip


def test_missing_or_torn_progress_reads_as_none(tmp_path: Path) -> None:
    assert read_progress(tmp_path) is None
    (tmp_path / "progress.json").write_text('{"step": 1')
    assert read_progress(tmp_path) is None
