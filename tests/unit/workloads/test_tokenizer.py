"""The word tokenizer of the small BERT."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")

from workloads.tokenizer import CLS_ID, PAD_ID, UNK_ID, WordVocab, words  # noqa: E402


def test_words_are_lower_cased_with_punctuation_apart() -> None:
    assert words("It's GOOD, really!") == ["it's", "good", ",", "really", "!"]


def test_the_vocabulary_ranks_by_count_then_word() -> None:
    vocab = WordVocab.build(["b a", "a c", "a b"], max_size=10)
    assert vocab.tokens[3:] == ("a", "b", "c")


def test_max_size_counts_the_specials() -> None:
    vocab = WordVocab.build(["a b c d e"], max_size=5)
    assert len(vocab) == 5 and vocab.id_of("e") == UNK_ID


def test_encode_starts_with_cls_and_pads_to_seq_len() -> None:
    vocab = WordVocab.build(["good film"], max_size=10)
    assert vocab.encode("Good plot", seq_len=5) == [CLS_ID, vocab.id_of("good"), UNK_ID, 0, 0]
    good = vocab.id_of("good")
    assert vocab.encode("good " * 10, seq_len=3) == [CLS_ID, good, good]
    batch = vocab.encode_batch(["good", "film film"], seq_len=4)
    assert batch.shape == (2, 4) and batch.dtype == np.int64 and batch[0, -1] == PAD_ID


def test_the_vocabulary_survives_json() -> None:
    vocab = WordVocab.build(["some words here", "and here"], max_size=100)
    assert WordVocab.from_json(vocab.to_json()) == vocab


def test_a_vocabulary_must_start_with_the_specials() -> None:
    with pytest.raises(ValueError, match="starts with"):
        WordVocab(("a", "b", "c"))
