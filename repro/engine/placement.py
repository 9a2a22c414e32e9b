"""Where a run computes and what it starts from: the device and the weight initialisation."""

from __future__ import annotations

import torch
import torch.nn as nn


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device=cuda but no CUDA device is available: use trainer.device=cpu or auto")
    return torch.device(name)


def initialize(model: nn.Module, scheme: str, *, redraw: bool = False) -> None:
    """Re-initialise conv/linear weights (biases to zero; BN to 1/0) by ``scheme``.

    ``default`` keeps the initialisation PyTorch's constructors drew; with ``redraw=True``
    (a fresh init of a built model, e.g. ``mask_from`` with ``init=random``) it draws it again
    through each module's ``reset_parameters``.
    """
    if scheme == "default":
        if redraw:
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
                    m.reset_parameters()
        return
    init = {"kaiming_normal": nn.init.kaiming_normal_, "xavier_normal": nn.init.xavier_normal_}[scheme]
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            init(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
