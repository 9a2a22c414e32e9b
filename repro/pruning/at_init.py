"""Prune-at-initialization baselines: SNIP, GraSP, SynFlow, random and magnitude at init.

Each method prunes once, in ``before_training``, to exactly the target sparsity, and
training then keeps the mask fixed. Scores come from the pure functions of
:mod:`repro.pruning.scores` (computed on a copy of the model); selection is
:meth:`MaskSet.prune_to`, so every method follows the pinned count rule: exactly
``floor(s*N + 0.5)`` weights are zero (per tensor with ``scope=layerwise``).

Deliberate deviation shared by all methods: the official codes count differently (GraSP
removes ``int(s*N)``, SNIP keeps ``round(N*(1-s))``, SynFlow thresholds with ``<=`` and
may remove ties beyond the count); here every method uses the same rule
(``masks.pruned_count``) so that runs at the same sparsity have the same number of weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from repro.pruning import scores as scoring
from repro.pruning.masks import MaskSet
from repro.pruning.methods import Context, Method, register

log = logging.getLogger(__name__)


def default_batch_size(dataset: str) -> int:
    """SNIP's scoring batch: its training batch size, 100 on MNIST-like data and 128 on CIFAR."""
    return 128 if dataset.startswith("cifar") else 100


def _positive_int(cfg: Any, key: str, default: int) -> int:
    value = getattr(cfg, key, default)
    value = default if value is None else int(value)
    if value < 1:
        raise ValueError(f"pruner.{key}={value}: use an integer >= 1")
    return value


class PruneAtInit(Method):
    """Score once before training, prune to the target sparsity, keep the mask fixed."""

    uses_schedule = False

    def scores(self, ctx: Context) -> list[torch.Tensor]:
        raise NotImplementedError

    def prune(self, ctx: Context) -> None:
        ctx.masks.prune_to(self.scores(ctx), self.sparsity, scope=self.scope)

    def before_training(self, ctx: Context) -> None:
        if self.sparsity > 0.0:
            self.prune(ctx)
            ctx.masks.clean_optimizer_state(ctx.optimizer)
        log.info("%s at init: sparsity %.6f, layer densities %s", self.name, ctx.masks.sparsity(),
                 ", ".join(f"{r['layer']}={r['density']:.4f}" for r in ctx.masks.density_table()))

    @staticmethod
    def batches(ctx: Context, batch_size: int):
        if ctx.scoring_batches is None:
            raise RuntimeError("this pruning method needs training data, but the loop provides no scoring batches")
        return ctx.scoring_batches(batch_size)


@register
class Snip(PruneAtInit):
    """SNIP (Lee et al. 2019): keep the largest |dL/dm| = |g * w| from ``num_batches`` batches."""

    name = "snip"

    def __init__(self, pruner: Any, sparsity: float, schedule: Any) -> None:
        super().__init__(pruner, sparsity, schedule)
        self.num_batches = _positive_int(pruner, "num_batches", 1)

    def scores(self, ctx: Context) -> list[torch.Tensor]:
        bs = _positive_int(self.cfg, "batch_size", default_batch_size(ctx.dataset))
        self.scoring_samples = float(self.num_batches * bs)
        return scoring.snip(ctx.model, ctx.masks, self.batches(ctx, bs), num_batches=self.num_batches)


@register
class Grasp(PruneAtInit):
    """GraSP (Wang et al. 2020): remove the weights with the highest -w * Hg (we keep the
    highest w * Hg, the same set; see :func:`repro.pruning.scores.grasp`)."""

    name = "grasp"

    def __init__(self, pruner: Any, sparsity: float, schedule: Any) -> None:
        super().__init__(pruner, sparsity, schedule)
        self.temperature = float(getattr(pruner, "temperature", 200.0))
        if not self.temperature > 0:
            raise ValueError(f"pruner.temperature={self.temperature}: use a positive number")
        self.samples_per_class = _positive_int(pruner, "samples_per_class", 10)
        self.num_iters = _positive_int(pruner, "num_iters", 1)

    def scores(self, ctx: Context) -> list[torch.Tensor]:
        # The balanced sample is the first samples_per_class of each class in stream order,
        # whatever the batch size; this one only sets how much is decoded per step.
        data = self.batches(ctx, default_batch_size(ctx.dataset))
        # a gradient pass and a Hessian-gradient pass over the balanced sample, per iteration
        self.scoring_samples = float(2 * self.samples_per_class * ctx.num_classes * self.num_iters)
        return scoring.grasp(ctx.model, ctx.masks, data, temperature=self.temperature,
                             samples_per_class=self.samples_per_class, num_iters=self.num_iters,
                             num_classes=ctx.num_classes)


def synflow_sparsity(sparsity: float, k: int, rounds: int) -> float:
    """The target after round k of SynFlow's exponential schedule: 1 - (1 - s)^(k / rounds)."""
    return sparsity if k >= rounds else 1.0 - (1.0 - sparsity) ** (k / rounds)


def synflow_prune(model: torch.nn.Module, masks: MaskSet, sparsity: float, input_shape: Sequence[int], *,
                  rounds: int = 100, scope: str = "global", dtype: torch.dtype = torch.float64) -> None:
    """Iterative SynFlow: ``rounds`` times score the masked network and prune to the next
    point of the exponential schedule; the last round lands exactly on ``sparsity``."""
    for k in range(1, rounds + 1):
        scores = scoring.synflow(model, masks, input_shape, dtype=dtype)
        # Rescale in the scoring precision before prune_to ranks in float32: raw synaptic
        # flow can exceed float32's range in deep networks. Ranking is unchanged.
        top = max(float(s.max()) for s in scores)
        if top > 0:
            scores = [s / top for s in scores]
        masks.prune_to(scores, synflow_sparsity(sparsity, k, rounds), scope=scope)


@register
class SynFlow(PruneAtInit):
    """SynFlow (Tanaka et al. 2020): data-free, ``rounds`` rounds of scoring and pruning on an
    exponential schedule, each scoring |dR/dtheta * theta| of the linearised masked network."""

    name = "synflow"

    def __init__(self, pruner: Any, sparsity: float, schedule: Any) -> None:
        super().__init__(pruner, sparsity, schedule)
        self.rounds = _positive_int(pruner, "rounds", 100)
        self.float64 = bool(getattr(pruner, "float64", True))

    def prune(self, ctx: Context) -> None:
        # Only the input's shape is read from the data: SynFlow feeds an all-ones input.
        x, _ = next(iter(self.batches(ctx, 1)))
        self.scoring_samples = float(self.rounds)  # one all-ones sample per round
        dtype = torch.float64 if self.float64 and ctx.device.type != "mps" else torch.float32
        synflow_prune(ctx.model, ctx.masks, self.sparsity, tuple(x.shape[1:]), rounds=self.rounds, scope=self.scope,
                      dtype=dtype)


@register
class RandomPruning(PruneAtInit):
    """Random pruning: uniform random scores from the run seed. ``scope=global`` removes a
    uniformly random subset of all prunable weights; ``scope=layerwise`` removes the same
    fraction, at random, from every layer (per-layer uniform)."""

    name = "random"

    def scores(self, ctx: Context) -> list[torch.Tensor]:
        return scoring.random(ctx.masks.weights, ctx.seed)


@register
class MagnitudeAtInit(PruneAtInit):
    """Magnitude pruning at initialization: keep the largest |w| of the initial weights."""

    name = "magnitude_init"

    def scores(self, ctx: Context) -> list[torch.Tensor]:
        return scoring.magnitude(ctx.masks.weights)
