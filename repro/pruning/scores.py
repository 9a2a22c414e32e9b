"""Saliency scores as pure functions: one score tensor per prunable weight, higher = keep.

Scores that need data or gradients work on a copy of the model, so scoring never
changes the weights or BatchNorm statistics that training starts from.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def magnitude(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """|w|: the magnitude criterion of PMP, GMP, LTH and one-shot pruning."""
    return [w.detach().abs() for w in weights]
