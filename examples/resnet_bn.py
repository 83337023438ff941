"""A small residual convolutional network with BatchNorm, written as plain PyTorch.

A stem convolution, two basic residual blocks (conv-BN-ReLU-conv-BN plus the identity, then
ReLU), global average pooling and a linear classifier. The stem and the second convolution of
every block are summed, so the adapter grows and removes their channels together (with their
BatchNorms); the first convolution of each block has channels of its own.

    neurosculpt run -b split-digits -s packnet --model examples/resnet_bn.py:factory
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, channels: int, inner: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, inner, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(inner, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + x)


class ResNet(nn.Module):
    def __init__(self, in_channels: int, n_outputs: int, channels: int = 16,
                 inner: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.blocks = nn.Sequential(*(BasicBlock(channels, inner) for _ in range(blocks)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def factory(input_shape: tuple[int, ...], n_outputs: int, channels: int = 16, inner: int = 16,
            blocks: int = 2) -> nn.Module:
    """neurosculpt's model factory: ``(input_shape, n_outputs, **model_params) -> nn.Module``;
    inputs are images ``[C, H, W]``."""
    if len(input_shape) != 3:
        raise ValueError(f"resnet_bn needs image input [C, H, W], got shape {tuple(input_shape)}")
    return ResNet(int(input_shape[0]), n_outputs, channels, inner, blocks)
