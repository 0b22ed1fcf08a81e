"""From a data source to model inputs, the same way for training and for inference.

``prepare_text`` and ``prepare_images`` load a source (``workloads.data``), take a
seeded subset and a stratified train/test split, and turn inputs into arrays the
model takes. For text the vocabulary is part of the model: a resumed run reuses the
vocabulary stored in the newest checkpoint (rebuilding it from the same data would
give the same one, but a changed source must not silently renumber words), and
inference encodes with the checkpoint's. ``encode_texts`` is that shared encoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workloads.bert import BertConfig, transformers_available
from workloads.checkpoint import load_checkpoint, newest_checkpoint
from workloads.data import (
    DataError,
    Dataset,
    balanced_subset,
    label_ids,
    load_images,
    load_text,
    stratified_split,
)
from workloads.loop import Arrays
from workloads.resnet import ResNetConfig
from workloads.tokenizer import WordVocab


@dataclass(frozen=True)
class Prepared:
    arrays: Arrays
    workload: str  # the model's key in checkpoint.MODEL_BUILDERS
    model_config: dict[str, Any]
    label_names: tuple[str, ...]
    extra_state: dict[str, Any] = field(default_factory=dict)  # stored in checkpoints


@dataclass(frozen=True)
class TextOptions:
    source: str = "rotten_tomatoes"
    limit: int | None = None  # examples in all (balanced per class when ``balance``)
    balance: bool = True
    test_fraction: float = 0.2
    seed: int = 0
    seq_len: int = 64
    vocab_size: int = 10000
    hidden: int = 128
    layers: int = 2
    heads: int = 2
    dropout: float = 0.1
    pooling: str = "cls"
    pretrained: str | None = None  # a local Hugging Face model directory


@dataclass(frozen=True)
class ImageOptions:
    source: str = "digits"
    limit: int | None = None
    test_fraction: float = 0.2
    seed: int = 0
    depth: int = 18
    width: int = 16


@dataclass(frozen=True)
class TextSplit:
    texts: list[str]  # the chosen subset
    y: npt.NDArray[np.int64]
    label_names: tuple[str, ...]
    train: npt.NDArray[np.int64]  # indices into ``texts``
    test: npt.NDArray[np.int64]


def split_text(options: TextOptions) -> TextSplit:
    """The subset (balanced unless told not to) and its stratified train/test split."""
    samples = load_text(options.source)
    y, names = label_ids(samples.labels)
    if options.balance:
        chosen = balanced_subset(y, options.seed, options.limit)
    else:
        chosen = np.arange(len(y) if options.limit is None else min(options.limit, len(y)))
    train, test = stratified_split(y[chosen], options.test_fraction, options.seed)
    return TextSplit([samples.texts[i] for i in chosen], y[chosen], names, train, test)


def prepare_text(options: TextOptions, checkpoint_dir: Path) -> Prepared:
    split = split_text(options)
    texts, y, names = split.texts, split.y, split.label_names
    if options.pretrained:
        return _prepare_pretrained(options, texts, y, names, (split.train, split.test))
    vocab = _stored_vocab(checkpoint_dir) or WordVocab.build(
        [texts[i] for i in split.train], max_size=options.vocab_size
    )
    x = vocab.encode_batch(texts, options.seq_len)
    config = BertConfig(
        vocab_size=len(vocab),
        num_classes=len(names),
        hidden=options.hidden,
        layers=options.layers,
        heads=options.heads,
        max_len=options.seq_len,
        dropout=options.dropout,
        pooling=options.pooling,
    )
    extra = {"vocab": list(vocab.tokens), "seq_len": options.seq_len}
    return Prepared(_split(x, y, split.train, split.test), "bert", config.to_dict(), names, extra)


def _prepare_pretrained(
    options: TextOptions,
    texts: list[str],
    y: npt.NDArray[np.int64],
    names: tuple[str, ...],
    split: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
) -> Prepared:
    directory = str(options.pretrained)
    if not transformers_available():
        raise DataError("--pretrained needs transformers: pip install transformers")
    if not Path(directory, "config.json").is_file():
        raise DataError(f"--pretrained {directory}: not a model directory (no config.json)")
    x = encode_pretrained(directory, texts, options.seq_len)
    config = {"directory": directory, "num_classes": len(names)}
    extra = {"seq_len": options.seq_len, "pretrained": directory}
    return Prepared(_split(x, y, *split), "bert-pretrained", config, names, extra)


def encode_pretrained(directory: str, texts: list[str], seq_len: int) -> npt.NDArray[np.int64]:
    """``[N, 2, seq_len]``: ids and attention mask from the directory's own tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    encoded = tokenizer(
        texts, max_length=seq_len, truncation=True, padding="max_length", return_tensors="np"
    )
    return np.stack([encoded["input_ids"], encoded["attention_mask"]], axis=1).astype(np.int64)


def encode_texts(state: dict[str, Any], texts: list[str]) -> npt.NDArray[np.int64]:
    """Model inputs for ``texts`` as the checkpoint ``state`` was trained on them."""
    seq_len = int(state["seq_len"])
    if state.get("pretrained"):
        return encode_pretrained(str(state["pretrained"]), texts, seq_len)
    return WordVocab(tuple(state["vocab"])).encode_batch(texts, seq_len)


def _stored_vocab(checkpoint_dir: Path) -> WordVocab | None:
    if newest_checkpoint(checkpoint_dir) is None:
        return None
    tokens = load_checkpoint(checkpoint_dir).get("vocab")
    return WordVocab(tuple(tokens)) if tokens else None


def split_images(
    options: ImageOptions,
) -> tuple[Dataset, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The dataset (a stratified subset of ``limit``) and its train/test indices."""
    dataset = load_images(options.source)
    if options.limit is not None and options.limit < len(dataset):
        keep, _ = stratified_split(dataset.y, 1 - options.limit / len(dataset), options.seed)
        dataset = dataset.subset(keep)
    train, test = stratified_split(dataset.y, options.test_fraction, options.seed)
    return dataset, train, test


def prepare_images(options: ImageOptions, checkpoint_dir: Path) -> Prepared:
    dataset, train, test = split_images(options)
    config = ResNetConfig(
        num_classes=len(dataset.label_names),
        depth=options.depth,
        width=options.width,
        in_channels=int(dataset.x.shape[1]),
    )
    arrays = _split(dataset.x, dataset.y, train, test)
    return Prepared(arrays, "resnet", config.to_dict(), dataset.label_names)


def _split(
    x: npt.NDArray[Any],
    y: npt.NDArray[np.int64],
    train: npt.NDArray[np.int64],
    test: npt.NDArray[np.int64],
) -> Arrays:
    return Arrays(x[train], y[train], x[test], y[test])
