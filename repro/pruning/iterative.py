"""Training-based baselines: LTH chains (IMP with rewinding), one-shot magnitude pruning with
fine-tuning, and mask-transfer controls that retrain a saved mask.

All of them are plug-ins to the one loop; they use its cycles (``after_cycle`` asks for
another training cycle, ``cycle_start_step`` positions it) rather than owning a loop.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch

from repro.config_base import ConfigError
from repro.pruning import scores as scoring
from repro.pruning.masks import MaskSet, pruned_count, select_topk
from repro.pruning.methods import Context, Method, register

log = logging.getLogger(__name__)
EPS = 1e-9


def shortened_round(current: float, rate: float, next_target: float) -> float:
    """The sparsity after one IMP round from ``current``: remove ``rate`` of the survivors,
    but never pass the next target (the round is shortened to land on it exactly)."""
    return min(1.0 - (1.0 - current) * (1.0 - rate), next_target)


def layer_round_counts(masks: MaskSet, rates: list[float], target_zeros: int) -> list[int]:
    """Zeros per layer after a round with per-layer rates, shortened so the total is at most
    ``target_zeros``: a full round removes round(rate_l * survivors_l) from each layer; if that
    passes the target, the additions shrink proportionally and the last few weights go to the
    layers with the largest remainders, so the total lands on ``target_zeros`` exactly."""
    zeros = [int((m == 0).sum()) for m in masks.masks]
    adds = [round(r * (m.numel() - z)) for r, m, z in zip(rates, masks.masks, zeros)]
    budget = target_zeros - sum(zeros)
    if sum(adds) <= budget:
        return [z + a for z, a in zip(zeros, adds)]
    exact = [a * budget / sum(adds) for a in adds]
    scaled = [int(e) for e in exact]
    order = sorted(range(len(adds)), key=lambda i: (-(exact[i] - scaled[i]), i))
    for i in order[: budget - sum(scaled)]:
        scaled[i] += 1
    return [z + a for z, a in zip(zeros, scaled)]


@register
class LotteryTicket(Method):
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

    Cycle 0 trains dense. After each cycle, ``rate`` of the surviving weights are removed
    by magnitude (globally, or per layer with ``layer_rates``), the network is rewound to
    its state at step ``rewind_step`` (all parameters, BN statistics included; optimizer
    and LR schedule fresh at that step) and trained again. One chain serves every target in
    ``targets``: a round is shortened to land exactly on each, and each target's cycle is
    reported on its own.
    """

    name = "lth"
    uses_schedule = False

    @classmethod
    def reports_chain(cls, pruner: Any) -> bool:
        return bool(getattr(pruner, "targets", None))

    def integrity_scope(self) -> str:
        # per-layer rates shorten rounds globally: the total, not each layer, lands on the target
        return "global" if self.layer_rates else self.scope

    @classmethod
    def check(cls, cfg: Any) -> None:
        if not (cfg.sparsity > 0.0 or bool(getattr(cfg.pruner, "targets", None))):
            raise ConfigError("pruner=lth needs a target: set sparsity > 0 or pruner.targets, e.g. sparsity=0.9")

    def __init__(self, pruner: Any, sparsity: float, schedule: Any) -> None:
        super().__init__(pruner, sparsity, schedule)
        targets = sorted({float(t) for t in (getattr(pruner, "targets", None) or [])} or {self.sparsity})
        if not targets or targets[0] <= 0.0:
            raise ValueError("pruner=lth needs sparsity > 0 or pruner.targets, e.g. pruner.targets=[0.5,0.9]")
        self.targets = targets
        self.rate = float(pruner.rate)
        if not 0.0 < self.rate < 1.0:
            raise ValueError(f"pruner.rate={self.rate}: remove a fraction in (0, 1) per round")
        self.layer_rates = dict(getattr(pruner, "layer_rates", {}) or {})
        self.rewind_step = int(pruner.rewind_step)
        self.current = 0.0  # the sparsity the current cycle trains at
        self.rewind_state: dict[str, torch.Tensor] | None = None

    # -------------------------------------------------------------- rewinding
    def _snapshot(self, ctx: Context) -> None:
        self.rewind_state = copy.deepcopy(ctx.model.state_dict())

    def before_training(self, ctx: Context) -> None:
        if self.rewind_step >= ctx.total_steps:
            raise ValueError(f"pruner.rewind_step={self.rewind_step} is past the end of a cycle ({ctx.total_steps} steps)")
        if self.rewind_step == 0:
            self._snapshot(ctx)

    def after_step(self, ctx: Context, step: int) -> bool:
        if self.rewind_state is None and step == self.rewind_step:
            self._snapshot(ctx)
        return False

    def rewind(self, ctx: Context) -> None:
        """Restore every parameter and buffer saved at the rewind step, keeping the current masks."""
        masks = ctx.masks.state()
        ctx.model.load_state_dict(self.rewind_state)
        ctx.masks.load(masks)

    def cycle_start_step(self) -> int:
        return self.rewind_step

    # -------------------------------------------------------------- rounds
    def final_target(self) -> float | None:
        return self.targets[-1]

    def cycle_target(self, cycle: int) -> float | None:
        hits = [t for t in self.targets if abs(t - self.current) < EPS]
        return hits[0] if hits else None

    def after_cycle(self, ctx: Context, cycle: int) -> bool:
        remaining = [t for t in self.targets if t > self.current + EPS]
        if not remaining:
            return False
        new = shortened_round(self.current, self.rate, remaining[0])
        if remaining[0] - new < EPS:
            new = remaining[0]
        magnitudes = scoring.magnitude(ctx.masks.weights)
        if self.layer_rates:
            rates = [float(self.layer_rates.get(name, self.rate)) for name in ctx.masks.names]
            target_zeros = pruned_count(remaining[0], ctx.masks.num_prunable)
            counts = layer_round_counts(ctx.masks, rates, target_zeros)
            ctx.masks.load([select_topk(s, m, k) for s, m, k in zip(magnitudes, ctx.masks.masks, counts)])
            new = remaining[0] if ctx.masks.num_zeros() == target_zeros else ctx.masks.sparsity()
        else:
            ctx.masks.prune_to(magnitudes, new, scope=self.scope)
        self.current = new
        self.rewind(ctx)
        log.info("LTH round %d: sparsity %.6f, rewound to step %d", cycle + 1, ctx.masks.sparsity(), self.rewind_step)
        return True

    def state_dict(self) -> dict:
        return {"current": self.current, "rewind_state": self.rewind_state}

    def load_state_dict(self, state: dict) -> None:
        self.current = float(state["current"])
        self.rewind_state = state["rewind_state"]


@register
class OneShot(Method):
    """Train dense, prune by magnitude to the target once, fine-tune ``finetune_epochs``.

    The fine-tuning cycle restarts the LR schedule over its own length ("learning-rate
    rewinding", Renda et al. 2020), with a fresh optimizer.
    """

    name = "oneshot"
    uses_schedule = False

    def __init__(self, pruner: Any, sparsity: float, schedule: Any) -> None:
        super().__init__(pruner, sparsity, schedule)
        self.finetune_epochs = int(pruner.finetune_epochs)
        if self.finetune_epochs < 1:
            raise ValueError(f"pruner.finetune_epochs={self.finetune_epochs}: fine-tune at least one epoch")
        self.cycle = 0

    def cycle_epochs(self, cycle: int, epochs: int) -> int:
        return epochs if cycle == 0 else self.finetune_epochs

    def after_cycle(self, ctx: Context, cycle: int) -> bool:
        if cycle > 0:
            return False
        ctx.masks.prune_to(scoring.magnitude(ctx.masks.weights), self.sparsity, scope=self.scope)
        self.cycle = 1
        return True

    def mask_is_final(self, step: int) -> bool:
        return self.cycle > 0

    def state_dict(self) -> dict:
        return {"cycle": self.cycle}

    def load_state_dict(self, state: dict) -> None:
        self.cycle = int(state["cycle"])


def load_masks(source: str | Path) -> dict[str, torch.Tensor]:
    """Masks by layer name from a saved state_dict (``<layer>.weight_mask`` entries) or checkpoint."""
    blob = torch.load(source, map_location="cpu", weights_only=False)
    if isinstance(blob, dict) and "model" in blob and isinstance(blob["model"], dict):
        blob = blob["model"]
    masks = {k[: -len(".weight_mask")]: v for k, v in blob.items() if k.endswith(".weight_mask")}
    if not masks:
        raise ValueError(f"{source} holds no masks (no '*.weight_mask' entries)")
    return masks


@register
class MaskTransfer(Method):
    """Retrain a saved final mask: the control that asks whether a mask is a "ticket".

    ``init=original`` keeps this seed's initialisation (the source run's, for the same
    seed), ``init=random`` draws a fresh one; ``rewind_step=k`` trains dense for k steps
    before the mask applies (a rewind point); ``shuffle=true`` replaces the mask by a
    random one with the same per-layer densities.
    """

    name = "mask_from"
    uses_sparsity = False
    uses_schedule = False

    @classmethod
    def check(cls, cfg: Any) -> None:
        if not cfg.pruner.source:
            raise ConfigError("pruner=mask_from needs pruner.source=<MLflow run id or a .pt file with masks>")
        if cfg.pruner.init not in ("original", "random"):
            raise ConfigError(f"pruner.init={cfg.pruner.init}: use original or random")

    def __init__(self, pruner: Any, sparsity: float, schedule: Any) -> None:
        super().__init__(pruner, sparsity, schedule)
        if not getattr(pruner, "source", None):
            raise ValueError("pruner=mask_from needs pruner.source=<MLflow run id or a .pt file with masks>")
        self.source = str(pruner.source)
        self.init = str(pruner.init)
        if self.init not in ("original", "random"):
            raise ValueError(f"pruner.init={self.init}: use original or random")
        self.rewind_step = int(pruner.rewind_step)
        self.shuffle = bool(pruner.shuffle)
        self.loaded: list[torch.Tensor] | None = None

    def _masks_for(self, ctx: Context) -> list[torch.Tensor]:
        saved = load_masks(self.source)
        missing = [n for n in ctx.masks.names if n not in saved]
        if missing:
            raise ValueError(f"the saved mask has no layer {missing[0]}: was it made for another model or prunable set?")
        out = []
        g = torch.Generator().manual_seed(ctx.seed + 104_729)
        for name, current in zip(ctx.masks.names, ctx.masks.masks):
            m = saved[name].to(current.device, current.dtype)
            if m.shape != current.shape:
                raise ValueError(f"saved mask for {name} has shape {tuple(m.shape)}, the model {tuple(current.shape)}")
            if self.shuffle:
                perm = torch.randperm(m.numel(), generator=g).to(m.device)
                m = m.flatten()[perm].view_as(m)
            out.append(m)
        return out

    def before_training(self, ctx: Context) -> None:
        self.loaded = self._masks_for(ctx)
        if self.init == "random":
            from repro.engine import initialize

            with torch.random.fork_rng():
                torch.manual_seed(ctx.seed + 7_919)
                initialize(ctx.model, ctx.init, redraw=True)
        if self.rewind_step == 0:
            ctx.masks.load(self.loaded)

    def after_step(self, ctx: Context, step: int) -> bool:
        if step == self.rewind_step and self.loaded is not None:
            # as LTH rewinding to step k: the sparse run starts there with a fresh optimizer
            # (no momentum carried over from the dense steps), the LR schedule at step k
            if ctx.reset_optimizer is not None:
                ctx.reset_optimizer(step)
            ctx.masks.load(self.loaded)
            ctx.masks.clean_optimizer_state(ctx.optimizer)
            return True
        return False

    def mask_is_final(self, step: int) -> bool:
        return step >= self.rewind_step

    def state_dict(self) -> dict:
        return {"loaded": self.loaded}

    def load_state_dict(self, state: dict) -> None:
        self.loaded = state["loaded"]
