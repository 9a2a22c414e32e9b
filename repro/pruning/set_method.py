"""SET, Sparse Evolutionary Training (Mocanu et al., Nature Communications 2018): sparse from the
first step with Erdős–Rényi layer densities; at every update drop the weakest active weights
and grow as many at random positions, with freshly initialised values.

Its schema (``SETConfig``, registered as /schema/pruner/set) sets the paper's defaults; the
shared drop-and-grow loop is :class:`repro.pruning.regrow.DropAndGrow`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from repro.pruning.methods import Context, register
from repro.pruning.regrow import DropAndGrow, DropAndGrowConfig


@dataclass
class SETConfig(DropAndGrowConfig):
    name: str = "set"
    #: Erdős–Rényi: density proportional to (n_in + n_out) / (n_in n_out)
    scope: str = "er"
    #: the paper's zeta
    drop_fraction: float = 0.3
    drop_schedule: str = "constant"
    #: the paper evolves the topology after every epoch
    delta_t: int = 1
    delta_unit: str = "epochs"
    #: ... until training ends (the last epoch's end is not an update: nothing would train the new weights)
    t_end: float = 1.0
    #: new weights drawn from the initialisation's distribution
    grow_init: str = "init"


@register
class SET(DropAndGrow):
    """Drop by magnitude, grow uniformly at random among the inactive positions."""

    name = "set"
    Config: ClassVar[type] = SETConfig

    def grow_scores(self, ctx: Context, step: int) -> list[torch.Tensor]:
        g = self.generator(ctx, step, 0)
        return [torch.rand(w.shape, generator=g).to(w.device) for w in ctx.masks.weights]
