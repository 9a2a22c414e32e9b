"""Pruning methods as plug-ins to the one training loop.

A method decides *when* to score and *how much* to prune; the loop (``repro.engine``)
calls its hooks and knows nothing about particular methods. A new method is one module in
``repro/pruning/`` (imported by the package, so registering is all it takes) holding its
class, registered with :func:`register`, and its config schema (``Config``, a dataclass
extending :class:`repro.config_base.PrunerConfig`, with ``ranges`` for its numeric knobs),
plus one YAML file in ``conf/pruner/``. By registering it gets checkpointing, tracking,
cost accounting and the contract tests (tests/test_contract.py).

Hook order in one run::

    before_training(ctx)                       # prune-at-init methods score here
    repeat per cycle:
        for each optimizer step:
            before_optimizer_step(ctx, step)   # gradients are dense here (RigL reads them)
            after_step(ctx, step) -> mask changed?
        for each epoch:          after_epoch(ctx, epoch)
        after_cycle(ctx, cycle) -> another cycle?   # LTH: prune, rewind, go again
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from repro.pruning import scores as scoring
from repro.pruning.masks import MaskSet
from repro.pruning.schedules import sparsity_at

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What a method may touch: the model, its masks, the optimizer, data and the run's shape."""

    model: nn.Module
    masks: MaskSet
    optimizer: torch.optim.Optimizer
    steps_per_epoch: int
    epochs: int
    seed: int
    device: torch.device
    #: yields normalised (x, y) training batches for scoring, batch size given
    scoring_batches: Callable[[int], Any] | None = None
    #: the dataset name (scoring defaults differ between MNIST-like data and CIFAR)
    dataset: str = ""
    #: restores the optimizer and LR schedule to a fresh state at a given step (LTH)
    reset_optimizer: Callable[[int], None] | None = None
    #: the weight initialisation scheme of the run (trainer.init): a fresh draw uses the same
    init: str = "kaiming_normal"
    #: classes of the dataset (GraSP's balanced sample holds samples_per_class of each)
    num_classes: int = 10
    #: logs metrics of a mask update at an optimizer step over all cycles (SET/RigL: weights regrown)
    log_metrics: Callable[[dict[str, float], int], None] = lambda metrics, step: None
    #: optimizer steps run in earlier cycles (so a method can log at a step over all cycles)
    steps_before_cycle: int = 0

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


class Method:
    """The base of every method: all hooks do nothing.

    The ``uses_*`` facts decide what enters a run's identity. They default to True, so a new
    method that forgets one only splits identities (a value it ignores makes another run),
    never merges them (a sparsity sweep collapsing into skips); a method opts out of what it
    does not read.
    """

    #: registry key and ``pruner=NAME``; required, unique
    name: ClassVar[str] = ""
    #: its config schema (a dataclass extending PrunerConfig), registered as /schema/pruner/NAME;
    #: None: a method whose schema lives in repro.config (the older ones)
    Config: ClassVar[type | None] = None
    #: ranges of its own numeric knobs, "pruner.KEY" -> repro.config_base.Range
    ranges: ClassVar[dict[str, Any]] = {}
    #: whether the loop must keep masked weights at zero
    uses_masks: ClassVar[bool] = True
    #: whether the final sparsity depends on cfg.sparsity (identity drops it otherwise)
    uses_sparsity: ClassVar[bool] = True
    #: whether the run depends on the `schedule` group
    uses_schedule: ClassVar[bool] = True
    #: masks only lose ones (the loop checks that no weight revives); False for SET/RigL
    monotone: ClassVar[bool] = True

    #: samples passed through the dense network (forward + backward) to score, for cost
    #: accounting; the loop keeps it in checkpoints, so a resumed run keeps its cost
    scoring_samples: float = 0.0
    #: global optimizer steps whose backward pass computed dense weight gradients (RigL's
    #: updates), costed as such (repro.cost); the loop keeps it in checkpoints. A tuple:
    #: a method records a step by assigning a longer one
    dense_gradient_steps: tuple[int, ...] = ()

    def __init__(self, pruner: Any, sparsity: float, schedule: Any) -> None:
        self.cfg = pruner
        self.sparsity = float(sparsity) if self.uses_sparsity else 0.0
        self.schedule = schedule
        self.scope = getattr(pruner, "scope", "global")

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Cross-field checks of the whole run config for this method; raise repro.config_base.ConfigError
        with a one-line message naming the fix. Runs before anything is written."""

    @classmethod
    def reports_chain(cls, pruner: Any) -> bool:
        """Whether this config makes one run serve several targets, each reported as its own nested
        run at its ``cycle_target`` (LTH with ``pruner.targets``); its own run is then a chain: the
        top-level ``sparsity`` leaves its identity and name."""
        return False

    def integrity_scope(self) -> str:
        """The scope whose count rule the final mask obeys (checked at the end of the run)."""
        return self.scope

    def before_training(self, ctx: Context) -> None:
        """Called once before the first step of a fresh run (not on resume)."""

    def before_optimizer_step(self, ctx: Context, step: int) -> None:
        """Called between backward and optimizer step ``step`` (1-based): ``p.grad`` holds the
        dense gradients (masked positions included; the optimizer has not consumed them)."""

    def after_step(self, ctx: Context, step: int) -> bool:
        """Called after optimizer step ``step`` (1-based); return True if the mask changed."""
        return False

    def after_epoch(self, ctx: Context, epoch: int) -> None:
        """Called after each epoch (0-based) of the current cycle."""

    def after_cycle(self, ctx: Context, cycle: int) -> bool:
        """Called at the end of a training cycle; return True to train another cycle."""
        return False

    def mask_is_final(self, step: int) -> bool:
        """Whether the mask at ``step`` is the one the run ends with (best_test_acc counts only these)."""
        return True

    def final_target(self) -> float | None:
        """The sparsity the run must end at exactly (checked by the integrity check), if any."""
        return self.sparsity if self.uses_sparsity else None

    def cycle_target(self, cycle: int) -> float | None:
        """The target sparsity that cycle ``cycle`` ends at, if its result is to be reported on its
        own (LTH: one result per target of the chain); None for single-cycle methods."""
        return None

    def cycle_epochs(self, cycle: int, epochs: int) -> int:
        """How many epochs cycle ``cycle`` trains (one-shot fine-tuning is shorter)."""
        return epochs

    def cycle_start_step(self) -> int:
        """The optimizer step a new cycle starts from (LTH rewinding to step k)."""
        return 0

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Add ``cls`` to the registry under its ``name``; a missing or taken name is refused."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} has no name of its own: set name = '...' on the class")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise TypeError(f"pruner name '{name}' is taken by {REGISTRY[name].__qualname__}")
    REGISTRY[name] = cls
    return cls


@register
class Dense(Method):
    """No pruning: the dense baseline. Reads neither sparsity nor the schedule."""

    name = "dense"
    uses_masks = False
    uses_sparsity = False
    uses_schedule = False


def build(pruner: Any, sparsity: float, schedule: Any) -> Method:
    """The method named by ``pruner.name``; unknown names list the known ones."""
    try:
        cls = REGISTRY[pruner.name]
    except KeyError:
        raise ValueError(f"unknown pruner '{pruner.name}': choose one of {', '.join(sorted(REGISTRY))}") from None
    return cls(pruner, sparsity, schedule)


@register
class GradualMagnitude(Method):
    """PMP (Qureshi et al. 2026): during one run, raise sparsity along ``schedule`` and
    recompute the mask from |w| of the still-active weights at every update.

    Updates happen every ``update_frequency`` iterations (or epochs) from ``start`` to
    ``end`` (fractions of the run); the last update lands exactly on ``end`` at the final
    sparsity, after which training continues on the final mask.
    """

    name = "pmp"
    uses_masks = True
    uses_sparsity = True
    uses_schedule = True

    def __init__(self, pruner: Any, sparsity: float, schedule: Any) -> None:
        super().__init__(pruner, sparsity, schedule)
        self.updates: list[int] = []
        self._next = 0
        self.start_step = 0
        self.end_step = 0

    def plan(self, steps_per_epoch: int, epochs: int) -> list[int]:
        """The optimizer steps after which the mask is recomputed (0 = before training)."""
        total = steps_per_epoch * epochs
        sch = self.schedule
        self.start_step = round(sch.start * total)
        self.end_step = round(sch.end * total)
        every = sch.update_frequency * (steps_per_epoch if sch.update_unit == "epochs" else 1)
        steps = list(range(self.start_step, self.end_step, every)) + [self.end_step]
        self.updates = sorted(set(steps))
        return self.updates

    def target_at(self, step: int) -> float:
        span = self.end_step - self.start_step
        t = 1.0 if span == 0 else (step - self.start_step) / span
        return sparsity_at(self.schedule.name, t, self.schedule.initial_sparsity, self.sparsity)

    def _update(self, ctx: Context, step: int) -> bool:
        target = self.target_at(step)
        if target <= 0.0:
            return False
        ctx.masks.prune_to(scoring.magnitude(ctx.masks.weights), target, scope=self.scope)
        ctx.masks.clean_optimizer_state(ctx.optimizer)
        return True

    #: fewer mask updates than this and the schedule is one-shot pruning in disguise
    MIN_UPDATES = 3

    def before_training(self, ctx: Context) -> None:
        self.plan(ctx.steps_per_epoch, ctx.epochs)
        if len(self.updates) < self.MIN_UPDATES:
            log.warning("%s plans only %d mask update(s) (window %d-%d of %d steps, every %d %s): not a gradual "
                        "schedule; train longer or lower schedule.update_frequency", self.name, len(self.updates),
                        self.start_step, self.end_step, ctx.total_steps, self.schedule.update_frequency,
                        self.schedule.update_unit)
        self._next = 0
        if self.updates and self.updates[0] == 0:
            self._next = 1
            self._update(ctx, 0)

    def after_step(self, ctx: Context, step: int) -> bool:
        if self._next >= len(self.updates) or step != self.updates[self._next]:
            return False
        self._next += 1
        return self._update(ctx, step)

    def mask_is_final(self, step: int) -> bool:
        return step >= self.end_step

    def state_dict(self) -> dict:
        return {"updates": self.updates, "next": self._next, "start_step": self.start_step, "end_step": self.end_step}

    def load_state_dict(self, state: dict) -> None:
        self.updates = list(state["updates"])
        self._next = int(state["next"])
        self.start_step = int(state["start_step"])
        self.end_step = int(state["end_step"])


@register
class GMP(GradualMagnitude):
    """Gradual magnitude pruning (Zhu & Gupta 2017): the same loop, cubic schedule by default."""

    name = "gmp"
