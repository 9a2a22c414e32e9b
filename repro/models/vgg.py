"""CIFAR VGGs with batch norm (3x3 convs without bias, each followed by BN and ReLU)."""

from __future__ import annotations

import torch
import torch.nn as nn

from repro.models.width import scaled

VGG16_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG19_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _features(layers: list, in_channels: int, width: float) -> nn.Sequential:
    modules: list[nn.Module] = []
    c = in_channels
    for v in layers:
        if v == "M":
            modules.append(nn.MaxPool2d(2))
        else:
            out = scaled(int(v), width)
            modules += [nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
    return nn.Sequential(*modules)


class VGG(nn.Module):
    def __init__(self, features: nn.Sequential, classifier: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def vgg_like(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> VGG:
    """SNIP's "VGG-like" (Lee et al. 2019, after Zagoruyko 2015): VGG-D's 13 convs with BN
    and a 512-512-10 classifier (Linear-BN-ReLU-Linear) instead of 4096-wide layers.

    At width 1: 14,987,722 parameters, of which 14,977,728 in prunable conv/linear weights.
    """
    f = _features(VGG16_LAYERS, in_channels, width)
    c = scaled(512, width)
    classifier = nn.Sequential(nn.Linear(c, c), nn.BatchNorm1d(c), nn.ReLU(inplace=True), nn.Linear(c, num_classes))
    return VGG(f, classifier)


def vgg19(num_classes: int = 10, in_channels: int = 3, width: float = 1.0) -> VGG:
    """CIFAR VGG-19 with BN as in GraSP (Wang et al. 2020): 16 convs and one 512->10 Linear.

    At width 1: 20,035,018 parameters, of which 20,024,000 in prunable conv/linear weights.
    """
    f = _features(VGG19_LAYERS, in_channels, width)
    return VGG(f, nn.Sequential(nn.Linear(scaled(512, width), num_classes)))
