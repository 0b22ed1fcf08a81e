"""ResNet-18/34/50 for small images in plain torch, and ``python -m workloads.resnet``.

No torchvision (it does not install beside the CPU torch here). The layout is the
paper's (He et al. 2015): four stages of basic blocks (18: 2-2-2-2, 34: 3-4-6-3) or
bottleneck blocks (50: 3-4-6-3, expansion 4), stage widths ``width * (1, 2, 4, 8)``,
strides 1-2-2-2. The stem is a 3x3 stride-1 convolution without max-pooling, as
for CIFAR: an 8x8 digit keeps 8, 4, 2, 1 pixels through the stages and a 28x28
image 28, 14, 7, 4; global average pooling then makes any input size work.
``width=64`` is the paper's network; ``width=16`` trains on a CPU in seconds.
Inputs ``[batch, in_channels, H, W]`` float32, outputs ``[batch, num_classes]`` logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


@dataclass(frozen=True)
class ResNetConfig:
    num_classes: int
    depth: int = 18
    width: int = 64
    in_channels: int = 1

    def __post_init__(self) -> None:
        if self.depth not in STAGES:
            raise ValueError(f"depth must be one of {sorted(STAGES)}, not {self.depth}")
        if min(self.num_classes, self.width, self.in_channels) < 1:
            raise ValueError("num_classes, width and in_channels must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes),
        )
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_planes, planes, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        )
        self.shortcut = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a strided 1x1 projection (option B)."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class ResNet(nn.Module):
    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        kind, counts = STAGES[config.depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, config.width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(config.width),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        in_planes = config.width
        for index, count in enumerate(counts):
            planes = config.width * 2**index
            for block_index in range(count):
                stride = 2 if index > 0 and block_index == 0 else 1
                stages.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_planes, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, in_channels, H, W]`` -> ``[batch, num_classes]`` logits."""
        features = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1))


def build(config: dict[str, Any]) -> nn.Module:
    """The model of a ``ResNetConfig`` given as a dict (as checkpoints store it)."""
    return ResNet(ResNetConfig(**config))


if __name__ == "__main__":
    from workloads.train import main

    raise SystemExit(main("resnet"))
