"""CIFAR ResNets built from torchvision's BasicBlock: 3x3 stem, no max-pool."""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock

from repro.models.width import scaled


class CifarResNet(nn.Module):
    """A ResNet for 32x32 inputs: a 3x3 stem, stages of BasicBlocks, global pool, one Linear.

    Shortcuts that change shape are 1x1 conv + BN (torchvision's ``downsample``).
    """

    def __init__(self, widths: list[int], blocks: list[int], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        c = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                s = stride if j == 0 else 1
                down = None
                if s != 1 or c != w:
                    down = nn.Sequential(nn.Conv2d(c, w, 1, stride=s, bias=False), nn.BatchNorm2d(w))
                layers.append(BasicBlock(c, w, stride=s, downsample=down))
                c = w
            stages.append(nn.Sequential(*layers))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet18(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> CifarResNet:
    """ResNet-18 for CIFAR (as in kuangliu/pytorch-cifar and the PMP paper): 64-128-256-512,
    two BasicBlocks per stage; 11,173,962 parameters at width 1."""
    return CifarResNet([scaled(c, width) for c in (64, 128, 256, 512)], [2, 2, 2, 2], num_classes, in_channels)


def resnet20(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> CifarResNet:
    """ResNet-20 (He et al. 2016, 16-32-64, three BasicBlocks per stage): the network the LTH
    paper calls "Resnet-18" (Frankle & Carbin 2019); 1x1-conv shortcuts as in open_lth.
    272,474 parameters at width 1."""
    return CifarResNet([scaled(c, width) for c in (16, 32, 64)], [3, 3, 3], num_classes, in_channels)
