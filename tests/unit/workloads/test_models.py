"""Model shapes and configs: BERT-style encoder and ResNet-18/34/50 on small images."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from workloads.bert import BertClassifier, BertConfig  # noqa: E402
from workloads.checkpoint import MODEL_BUILDERS, build_model  # noqa: E402
from workloads.resnet import ResNet, ResNetConfig  # noqa: E402
from workloads.tokenizer import PAD_ID  # noqa: E402


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bert_gives_one_row_of_logits_per_text(pooling: str) -> None:
    model = BertClassifier(
        BertConfig(vocab_size=50, num_classes=3, hidden=16, heads=2, max_len=12, pooling=pooling)
    )
    ids = torch.randint(3, 50, (5, 12))
    ids[:, 8:] = PAD_ID
    assert model(ids).shape == (5, 3)


def test_bert_ignores_padding() -> None:
    torch.manual_seed(0)
    model = BertClassifier(BertConfig(vocab_size=20, num_classes=2, hidden=8, heads=2, max_len=10))
    model.eval()
    short = torch.tensor([[2, 5, 6, PAD_ID, PAD_ID, PAD_ID]])
    longer = torch.tensor([[2, 5, 6, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]])
    assert torch.allclose(model(short), model(longer), atol=1e-5)


def test_bert_refuses_a_sequence_longer_than_max_len() -> None:
    model = BertClassifier(BertConfig(vocab_size=20, num_classes=2, hidden=8, heads=2, max_len=4))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones((1, 5), dtype=torch.long))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"hidden": 10, "heads": 3}, "multiple of heads"),
        ({"layers": 0}, ">= 1"),
        ({"pooling": "max"}, "pooling"),
    ],
)
def test_bert_config_is_checked(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BertConfig(vocab_size=10, num_classes=2, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [18, 34, 50])
@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 28), (3, 28)])
def test_resnet_takes_small_images_of_any_depth(depth: int, channels: int, size: int) -> None:
    model = ResNet(ResNetConfig(num_classes=10, depth=depth, width=4, in_channels=channels))
    assert model(torch.rand(2, channels, size, size)).shape == (2, 10)


def test_resnet_18_at_paper_width_has_the_papers_size() -> None:
    model = ResNet(ResNetConfig(num_classes=1000, depth=18, width=64, in_channels=3))
    params = sum(p.numel() for p in model.parameters())
    assert 11.0e6 < params < 11.8e6  # 11.7 M with the 7x7 stem; ours is 3x3


def test_resnet_config_is_checked() -> None:
    with pytest.raises(ValueError, match="depth"):
        ResNetConfig(num_classes=10, depth=20)


def test_models_are_built_by_name_from_plain_configs() -> None:
    config = ResNetConfig(num_classes=3, width=4).to_dict()
    assert isinstance(build_model("resnet", config), ResNet)
    assert {"bert", "resnet"} <= set(MODEL_BUILDERS)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vit", {})
