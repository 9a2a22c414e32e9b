"""Sparse-to-sparse training: start sparse at the target, and every ``delta_t`` steps drop the
weakest active weights and grow as many new ones (SET, RigL). Their shared loop lives here;
a method is a subclass that says how to score growth (:meth:`DropAndGrow.grow_scores`).

Per layer, at an update with drop fraction f: k = floor(f * active) of the active weights
with the smallest |w| are dropped (ties: the later position goes), then k positions among
those now inactive (the just-dropped included, as in RigL's code) with the highest growth
score are grown (ties: the earlier position wins). Every layer keeps its count, so the
pinned total floor(s*N + 0.5) and the initial per-layer distribution (``scope``: er, erk,
uniform/layerwise, global) hold after every update. Masks change through
:meth:`MaskSet.update`, which resets optimizer state at every dropped and grown position; a
weight dropped and grown back at the same update keeps its value and state (RigL's
``reinit_when_same=False``).

Updates happen after optimizer steps delta_t, 2 delta_t, ... up to ``t_end`` of training
(RigL's order: the optimizer applies the step's gradients, then the mask moves). The drop
fraction is constant or decays by cosine to 0 at ``t_end`` (RigL: f0/2 (1 + cos(pi t/t_end))).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from repro import records as rec
from repro.config_base import ConfigError, PrunerConfig, Range
from repro.pruning import scores as scoring
from repro.pruning.masks import select_topk
from repro.pruning.methods import Context, Method


@dataclass
class DropAndGrowConfig(PrunerConfig):
    """The knobs every drop-and-grow method shares (a subclass's schema sets its paper's defaults)."""

    scope: str = "erk"
    #: fraction of each layer's active weights dropped (and regrown) at the first update
    drop_fraction: float = 0.3
    #: constant | cosine: how the drop fraction moves from the first update to t_end
    drop_schedule: str = "cosine"
    #: update the mask every delta_t units
    delta_t: int = 100
    delta_unit: str = "iterations"  # iterations | epochs
    #: no update after this fraction of training
    t_end: float = 0.75
    #: zeros | init: grown weights start at 0.0 or at a fresh draw of the run's initialisation
    grow_init: str = "zeros"


RANGES = {
    "pruner.drop_fraction": Range(0, 1, lo_open=True, hi_open=True,
                                  fix="drop a fraction in (0, 1) of the active weights, e.g. pruner.drop_fraction=0.3"),
    "pruner.delta_t": Range(1, fix="update the mask every N >= 1 units, e.g. pruner.delta_t=100"),
    "pruner.t_end": Range(0, 1, lo_open=True, fix="stop updating at a fraction of training in (0, 1], e.g. pruner.t_end=0.75"),
}

CHOICES = {"drop_schedule": ("constant", "cosine"), "delta_unit": ("iterations", "epochs"), "grow_init": ("zeros", "init")}

#: how grow_init=init draws fresh weights for each trainer.init (the schemes of repro.engine.placement)
FRESH = {
    "kaiming_normal": lambda t, g: nn.init.kaiming_normal_(t, generator=g),
    "xavier_normal": lambda t, g: nn.init.xavier_normal_(t, generator=g),
    "default": lambda t, g: nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=g),  # torch's Conv/Linear default
}


def cosine_fraction(initial: float, step: int, end: int) -> float:
    """RigL's cosine decay of the drop fraction: initial/2 (1 + cos(pi min(step, end)/end))."""
    return initial * 0.5 * (1.0 + math.cos(math.pi * min(step, end) / end)) if end > 0 else initial


def drop_and_grow(weight: torch.Tensor, mask: torch.Tensor, grow_score: torch.Tensor, fraction: float) -> torch.Tensor:
    """One layer's new mask: drop floor(fraction * active) of the smallest |w| among active
    weights, grow as many of the highest ``grow_score`` among the then inactive positions."""
    n = mask.numel()
    active = int(mask.sum())
    k = int(math.floor(fraction * active))
    if k == 0:
        return mask.clone()
    kept = select_topk(weight.detach().abs(), mask, n - (active - k))
    grown = select_topk(grow_score, 1.0 - kept, n - k)
    return kept + grown


class DropAndGrow(Method):
    """Start at the target sparsity with a random mask spread by ``scope``; drop and grow on a plan."""

    uses_schedule = False
    monotone = False
    ranges: ClassVar[dict[str, Any]] = RANGES
    #: whether growth reads the dense gradient (costed as such at each update)
    needs_gradient: ClassVar[bool] = False

    def __init__(self, pruner: Any, sparsity: float, schedule: Any) -> None:
        super().__init__(pruner, sparsity, schedule)
        self.drop_fraction = float(pruner.drop_fraction)
        self.drop_schedule = str(pruner.drop_schedule)
        self.delta_t = int(pruner.delta_t)
        self.delta_unit = str(pruner.delta_unit)
        self.t_end = float(pruner.t_end)
        self.grow_init = str(pruner.grow_init)
        self.every = 0
        self.end_step = 0
        self.grads: list[torch.Tensor] | None = None

    @classmethod
    def check(cls, cfg: Any) -> None:
        for key, allowed in CHOICES.items():
            value = getattr(cfg.pruner, key)
            if value not in allowed:
                raise ConfigError(f"pruner.{key}={value}: use {' or '.join(allowed)}")
        if not cfg.sparsity > 0.0:
            raise ConfigError(f"pruner={cfg.pruner.name} trains sparse from the first step: set sparsity > 0, e.g. sparsity=0.9")

    # ------------------------------------------------------------------ the plan
    def plan(self, steps_per_epoch: int, epochs: int) -> None:
        total = steps_per_epoch * epochs
        self.every = self.delta_t * (steps_per_epoch if self.delta_unit == "epochs" else 1)
        self.end_step = min(int(math.floor(self.t_end * total)), total - 1)  # an update after the last step trains nothing

    def is_update(self, step: int) -> bool:
        """Whether the mask moves after step ``step``: every delta_t up to t_end, while the drop
        fraction is above 0 (the cosine reaches 0 at t_end: an update there would move nothing)."""
        return step % self.every == 0 and step <= self.end_step and self.fraction_at(step) > 0.0

    def fraction_at(self, step: int) -> float:
        if self.drop_schedule == "cosine":
            return cosine_fraction(self.drop_fraction, step, self.end_step)
        return self.drop_fraction

    # ------------------------------------------------------------------ hooks
    def before_training(self, ctx: Context) -> None:
        self.plan(ctx.steps_per_epoch, ctx.epochs)
        ctx.masks.prune_to(scoring.random(ctx.masks.weights, ctx.seed), self.sparsity, scope=self.scope)
        ctx.masks.clean_optimizer_state(ctx.optimizer)

    def _ensure_plan(self, ctx: Context) -> None:
        if not self.every:  # resumed: the plan is a pure function of the run's shape
            self.plan(ctx.steps_per_epoch, ctx.epochs)

    def before_optimizer_step(self, ctx: Context, step: int) -> None:
        self._ensure_plan(ctx)
        if self.needs_gradient and self.is_update(step):
            self.grads = [w.grad.detach().abs().clone() for w in ctx.masks.weights]
            self.dense_gradient_steps = (*self.dense_gradient_steps, ctx.steps_before_cycle + step)

    def after_step(self, ctx: Context, step: int) -> bool:
        self._ensure_plan(ctx)
        if not self.is_update(step):
            return False
        fraction = self.fraction_at(step)
        old = ctx.masks.state()
        scores = self.grow_scores(ctx, step)
        new = [drop_and_grow(w, m, s, fraction) for w, m, s in zip(ctx.masks.weights, old, scores)]
        self.grads = None
        _, grown = ctx.masks.update(new, ctx.optimizer)
        if self.grow_init == "init":
            self._fresh_weights(ctx, step, grown)
        regrown = sum(int(g.sum()) for g in grown)
        ctx.log_metrics({rec.REGROWN: float(regrown), rec.UPDATE_DROP_FRACTION: fraction}, ctx.steps_before_cycle + step)
        return True

    def grow_scores(self, ctx: Context, step: int) -> list[torch.Tensor]:
        """Per layer, the score by which inactive positions are grown (highest first)."""
        raise NotImplementedError

    def generator(self, ctx: Context, step: int, salt: int) -> torch.Generator:
        """A generator that is a pure function of (seed, step, salt): a resumed run draws the same."""
        return torch.Generator().manual_seed((ctx.seed + 1) * 1_000_003 + 7_919 * step + salt)

    @torch.no_grad()
    def _fresh_weights(self, ctx: Context, step: int, grown: list[torch.Tensor]) -> None:
        g = self.generator(ctx, step, 104_729)
        for w, where in zip(ctx.masks.weights, grown):
            if bool(where.any()):
                fresh = FRESH[ctx.init](torch.empty(w.shape, dtype=w.dtype), g).to(w.device)
                w.copy_(torch.where(where, fresh, w))
