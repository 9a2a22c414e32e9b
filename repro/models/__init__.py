"""Model families and their registry: ``build(name, ...)`` is the one way to make a model."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from repro.models.lenet import LeNet5Caffe, LeNet300
from repro.models.resnet import resnet18, resnet20
from repro.models.vgg import vgg19, vgg_like

#: name -> factory(num_classes, in_channels, width)
REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "lenet300": LeNet300,
    "lenet5": LeNet5Caffe,
    "vgg_like": vgg_like,
    "vgg19": vgg19,
    "resnet18": resnet18,
    "resnet20": resnet20,
}


def build(name: str, *, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    """Make the model ``name``; unknown names fail with the list of known ones."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}': choose one of {', '.join(sorted(REGISTRY))}") from None
    return factory(num_classes=num_classes, in_channels=in_channels, width=width)
