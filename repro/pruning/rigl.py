"""RigL, Rigging the Lottery (Evci, Gale, Menick, Castro & Elsen, ICML 2020): sparse from the first
step with ERK layer densities; every delta_t steps drop the weakest active weights and grow as
many where the dense gradient is largest, new weights at zero.

Its schema (``RigLConfig``, registered as /schema/pruner/rigl) sets the paper's defaults; the
shared drop-and-grow loop is :class:`repro.pruning.regrow.DropAndGrow`. The dense gradient is
read between backward and the optimizer step (``before_optimizer_step``), where ``p.grad`` still
holds every position's gradient, and each such step is costed as a dense-gradient step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from repro.pruning.methods import Context, register
from repro.pruning.regrow import DropAndGrow, DropAndGrowConfig


@dataclass
class RigLConfig(DropAndGrowConfig):
    name: str = "rigl"
    #: Erdős–Rényi-Kernel layer densities
    scope: str = "erk"
    drop_fraction: float = 0.3
    drop_schedule: str = "cosine"
    delta_t: int = 100
    delta_unit: str = "iterations"
    t_end: float = 0.75
    grow_init: str = "zeros"


@register
class RigL(DropAndGrow):
    """Drop by magnitude, grow by |dense gradient| of this step's batch."""

    name = "rigl"
    Config: ClassVar[type] = RigLConfig
    needs_gradient = True

    def grow_scores(self, ctx: Context, step: int) -> list[torch.Tensor]:
        if self.grads is None:
            raise RuntimeError("rigl: no dense gradients were captured before this update's optimizer step")
        return self.grads
