"""A word-level tokenizer for the small BERT: a lower-cased vocabulary of the training set.

No WordPiece and no download: ``WordVocab.build`` counts the words of the training
texts and keeps the most frequent ``max_size`` (ties by word, so the same texts
always give the same ids). Ids 0-2 are special: ``[PAD]`` (0, masked out by the
model), ``[UNK]`` (a word not in the vocabulary) and ``[CLS]`` (first position,
whose output classifies the text). ``encode`` gives exactly ``seq_len`` ids:

    >>> vocab = WordVocab.build(["a good film", "a bad film"], max_size=10)
    >>> vocab.tokens[3:]  # by count, then by word
    ('a', 'film', 'bad', 'good')
    >>> vocab.encode("A GOOD plot!", seq_len=6)  # [CLS] a good [UNK] [UNK] [PAD]
    [2, 3, 6, 1, 1, 0]
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"
SPECIALS = (PAD, UNK, CLS)
PAD_ID, UNK_ID, CLS_ID = 0, 1, 2
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: ``"It's GOOD!"`` -> ``["it's", "good", "!"]``."""
    return _WORD_RE.findall(text.lower())


@dataclass(frozen=True)
class WordVocab:
    """Word -> id; ``tokens[i]`` is the word of id ``i`` (specials first)."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.tokens[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        object.__setattr__(self, "_ids", {token: i for i, token in enumerate(self.tokens)})

    @classmethod
    def build(cls, texts: Iterable[str], max_size: int = 20000, min_count: int = 1) -> WordVocab:
        """The ``max_size`` most frequent words (specials included) seen ``min_count`` times."""
        if max_size <= len(SPECIALS):
            raise ValueError(f"max_size must exceed {len(SPECIALS)}")
        counts = Counter(word for text in texts for word in words(text))
        ranked = sorted(
            (word for word, n in counts.items() if n >= min_count and word not in SPECIALS),
            key=lambda word: (-counts[word], word),
        )
        return cls(SPECIALS + tuple(ranked[: max_size - len(SPECIALS)]))

    def __len__(self) -> int:
        return len(self.tokens)

    def id_of(self, word: str) -> int:
        ids: dict[str, int] = getattr(self, "_ids")  # noqa: B009 (set in __post_init__)
        return ids.get(word, UNK_ID)

    def encode(self, text: str, seq_len: int) -> list[int]:
        """``[CLS]`` and the first ``seq_len - 1`` word ids, padded with ``[PAD]``."""
        ids = [CLS_ID, *(self.id_of(word) for word in words(text)[: seq_len - 1])]
        return ids + [PAD_ID] * (seq_len - len(ids))

    def encode_batch(self, texts: Sequence[str], seq_len: int) -> npt.NDArray[np.int64]:
        """``[len(texts), seq_len]`` token ids."""
        if seq_len < 2:
            raise ValueError("seq_len must be at least 2 ([CLS] and one word)")
        out = np.zeros((len(texts), seq_len), dtype=np.int64)
        for row, text in enumerate(texts):
            out[row] = self.encode(text, seq_len)
        return out

    def to_json(self) -> str:
        return json.dumps({"kind": "word", "tokens": list(self.tokens)})

    @classmethod
    def from_json(cls, text: str) -> WordVocab:
        data = json.loads(text)
        if data.get("kind") != "word":
            raise ValueError("not a word vocabulary")
        return cls(tuple(str(token) for token in data["tokens"]))
