"""Classification metrics from a confusion matrix: accuracy and macro precision/recall/F1.

The matrix is ``counts[true][predicted]`` (rows: true class). Each worker of a
data-parallel evaluation counts its own shard; the sums of the matrices are the
matrix of the whole set, so the workers add theirs (an all-reduce) and every rank
derives the same metrics.

Macro averages weigh every class the same. A class that is never predicted has
precision 0 (it is counted, not skipped), one absent from the truth has recall 0:
two classes, truth [0, 0, 1, 1], predictions [0, 0, 0, 1] give accuracy 0.75,
precision (2/3 + 1) / 2 = 0.833, recall (1 + 1/2) / 2 = 0.75 and F1 (0.8 + 0.667) / 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def confusion_matrix(
    truth: Sequence[int] | npt.NDArray[np.int64],
    predicted: Sequence[int] | npt.NDArray[np.int64],
    num_classes: int,
) -> npt.NDArray[np.int64]:
    """``counts[t][p]``: how many of class ``t`` were predicted as ``p``."""
    true_arr = np.asarray(truth, dtype=np.int64)
    pred_arr = np.asarray(predicted, dtype=np.int64)
    if true_arr.shape != pred_arr.shape:
        raise ValueError(f"{true_arr.shape[0]} labels but {pred_arr.shape[0]} predictions")
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (true_arr, pred_arr), 1)
    return counts


def classification_metrics(counts: npt.NDArray[np.int64]) -> dict[str, float]:
    """accuracy, precision, recall, f1 (macro) and support of a confusion matrix."""
    total = int(counts.sum())
    correct = np.diag(counts).astype(np.float64)
    predicted = counts.sum(axis=0).astype(np.float64)
    actual = counts.sum(axis=1).astype(np.float64)
    precision = np.divide(correct, predicted, out=np.zeros_like(correct), where=predicted > 0)
    recall = np.divide(correct, actual, out=np.zeros_like(correct), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros_like(correct), where=denominator > 0
    )
    return {
        "accuracy": float(correct.sum() / total) if total else 0.0,
        "precision": float(precision.mean()) if len(correct) else 0.0,
        "recall": float(recall.mean()) if len(correct) else 0.0,
        "f1": float(f1.mean()) if len(correct) else 0.0,
        "support": float(total),
    }
