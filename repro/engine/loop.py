"""The one training loop: train per epoch, call the method's hooks, run the cycles.

The loop knows nothing about particular pruning methods or about MLflow: methods plug in
through :class:`repro.pruning.methods.Method` hooks, and metrics leave through the
``on_epoch`` callback (once per epoch) and the ``on_mask`` callback (at every mask change, so a
gradual method's ramp is visible step by step). Both give the optimizer steps run so far, over
all cycles, as the step: one x-axis for every series of a run. Evaluation, the LR schedule and checkpoints live in their own
modules of :mod:`repro.engine`; this one holds the loop, its state and the cost of a run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from repro import records as rec
from repro import threads
from repro.cost import forward_flops, layer_macs, training_flops
from repro.data import Batches, Dataset, Normalizer
from repro.engine import checkpoint as ckpt_io
from repro.engine.evaluation import epoch_means, evaluate, headline
from repro.engine.lr import lr_factor
from repro.optim import load_state, make_optimizer, masks_its_update
from repro.pruning.masks import MaskSet
from repro.pruning.methods import Context, Method

log = logging.getLogger(__name__)


#: keys of the per-epoch history that are not logged as metrics
HISTORY_ONLY = (rec.EPOCH, rec.CYCLE, rec.MASK_FINAL)


def _current_names(entry: dict) -> dict:
    """A history entry of a checkpoint written before the metric namespaces, under today's names
    and units (repro.records.LEGACY_METRICS)."""
    out = {}
    for k, v in entry.items():
        new, factor = rec.legacy_metric(k) or (k, 1.0)
        out[new] = v * factor
    return out


class NonFiniteLoss(RuntimeError):
    """Training diverged (NaN or inf loss); continuing would only produce garbage."""


@dataclass
class LoopState:
    """Where the run stands; saved in every checkpoint."""

    cycle: int = 0
    epoch: int = 0  # epochs completed in this cycle
    step: int = 0  # optimizer steps in this cycle
    total_steps_run: int = 0  # optimizer steps over all cycles (cost accounting)
    started: bool = False  # before_training has run
    history: list[dict] = field(default_factory=list)
    #: (step over all cycles, per-layer density) each time the mask changed
    density_log: list[tuple[int, list[float]]] = field(default_factory=list)


@dataclass
class LoopConfig:
    """The loop's settings: the trainer config's values, resolved for this machine (precision,
    channels_last) and this run (its checkpoint file)."""

    epochs: int
    batch_size: int
    eval_batch_size: int = 1000
    eval_every: int = 1
    seed: int = 0
    augment: bool = True
    progress: str = "auto"
    precision: str = "fp32"  # fp32 | bf16
    channels_last: bool = False
    compile: bool = False
    checkpoint_every: int = 1
    checkpoint_path: Path | None = None
    #: the weight initialisation scheme (a method that draws fresh weights uses the same)
    init: str = "kaiming_normal"

    @classmethod
    def from_trainer(cls, trainer: Any, **resolved: Any) -> LoopConfig:
        """The trainer config's value for every field both have, then the values resolved for
        this machine and run (precision, channels_last, seed, checkpoint_path ...)."""
        values = {f.name: trainer[f.name] for f in fields(cls) if f.name in trainer}
        return cls(**{**values, **resolved})


class Engine:
    """Trains ``model`` on ``dataset`` with ``method`` plugged in."""

    def __init__(self, model: nn.Module, dataset: Dataset, method: Method, masks: MaskSet, optim: Any,
                 cfg: LoopConfig, device: torch.device,
                 on_epoch: Callable[[dict, int], None] = lambda metrics, step: None,
                 on_cycle: Callable[[dict, int, float], None] = lambda metrics, cycle, target: None,
                 on_update: Callable[[dict, int], None] = lambda metrics, step: None,
                 on_mask: Callable[[dict, int], None] = lambda metrics, step: None) -> None:
        self.model = model
        self.dataset = dataset
        self.method = method
        self.masks = masks
        self.optim_cfg = optim
        self.cfg = cfg
        self.device = device
        self.on_epoch = on_epoch
        self.on_cycle = on_cycle
        self.on_mask = on_mask
        self.normalize = Normalizer(dataset.name, device)
        augment = cfg.augment and dataset.spec.augment
        self.train_split = dataset.train.to(device)
        self.test_split = dataset.test.to(device)
        self.val_split = dataset.val.to(device) if dataset.val is not None else None
        self.batches = Batches(self.train_split, cfg.batch_size, self.normalize, augment=augment)
        self.steps_per_epoch = len(self.batches)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(device=device, memory_format=self.memory_format)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
            if cfg.precision == "bf16" else contextlib.nullcontext
        )
        self.macs = layer_macs(model, tuple(dataset.train.images.shape[1:]))
        self.state = LoopState()
        self._new_optimizer(0)
        self.ctx = Context(
            model=model, masks=masks, optimizer=self.optimizer, steps_per_epoch=self.steps_per_epoch,
            epochs=cfg.epochs, seed=cfg.seed, device=device, scoring_batches=self.scoring_batches,
            dataset=dataset.name, reset_optimizer=self._new_optimizer, init=cfg.init,
            num_classes=dataset.num_classes, log_metrics=on_update,
        )
        #: the masks at the last change, for the check that a monotone method never revives a weight
        self._last_masks: list[torch.Tensor] | None = None

    # ------------------------------------------------------------------ plumbing for methods
    @property
    def epochs(self) -> int:
        """Epochs of the current cycle."""
        return self.method.cycle_epochs(self.state.cycle, self.cfg.epochs)

    def _new_optimizer(self, step: int) -> None:
        """A fresh optimizer and LR schedule positioned at ``step`` (LTH rewinding resets both)."""
        masks = dict(zip(self.masks.weights, self.masks.masks)) if self.method.uses_masks else None
        self.optimizer = self.build_optimizer(masks)
        #: whether the loop must mask gradients (SGD masks its own update instead)
        self.mask_grads = self.method.uses_masks and not masks_its_update(self.optimizer)
        self.lr_factor = lr_factor(self.optim_cfg, self.steps_per_epoch, self.epochs)
        for g in self.optimizer.param_groups:
            g["initial_lr"] = g["lr"]
        self._factor: float | None = None
        self.set_lr(step)
        if hasattr(self, "ctx"):
            self.ctx.optimizer = self.optimizer

    def build_optimizer(self, masks: dict[torch.Tensor, torch.Tensor] | None) -> torch.optim.Optimizer:
        """The optimizer of a new cycle; ``masks`` (weight -> mask) when the method prunes. A seam
        for the benchmark, which also times the loop stepping torch's own SGD."""
        return make_optimizer(self.model.parameters(), self.optim_cfg, masks)

    def set_lr(self, step: int) -> None:
        """The learning rate for optimizer step ``step`` (0-based): a pure function of the step, so
        a resumed run needs no scheduler state. Writes the param groups only when the factor
        changes (cheaper per step than ``LambdaLR.step``; same values: initial_lr * factor)."""
        factor = self.lr_factor(step)
        if factor != self._factor:
            self._factor = factor
            for g in self.optimizer.param_groups:
                g["lr"] = g["initial_lr"] * factor

    def scoring_batches(self, batch_size: int):
        """Normalised training batches for scoring (fixed order: epoch -1 of this seed)."""
        return Batches(self.train_split, batch_size, self.normalize, augment=False).epoch(self.cfg.seed, -1)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.memory_format) if self.cfg.channels_last else x

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            # kept beside the method's own state: a resumed SNIP/GraSP/SynFlow run keeps its
            # scoring cost, a resumed RigL run its dense-gradient steps
            "method_cost": {"scoring_samples": self.method.scoring_samples,
                            "dense_gradient_steps": list(self.method.dense_gradient_steps)},
            "loop": asdict(self.state),
            "rng": torch.get_rng_state(),
        }

    def save_checkpoint(self) -> None:
        if self.cfg.checkpoint_path is not None:
            ckpt_io.save_atomic(self.checkpoint(), self.cfg.checkpoint_path)

    def try_resume(self) -> bool:
        """Load the last checkpoint if there is one; return whether the run resumed."""
        path = self.cfg.checkpoint_path
        if path is None or not path.is_file():
            return False
        ckpt = ckpt_io.load(path, self.device)
        self.model.load_state_dict(ckpt["model"])
        self.state = LoopState(**ckpt["loop"])
        self.state.history = [_current_names(h) for h in self.state.history]
        self._new_optimizer(self.state.step)
        load_state(self.optimizer, ckpt["optimizer"])  # the kernel choice is this run's, not the checkpoint's
        # a checkpoint of MaskedSGD may hold momentum at masked positions (never applied there);
        # zero it, so that the state is clean whatever optimizer path resumes from it
        self.masks.clean_optimizer_state(self.optimizer)
        self.method.load_state_dict(ckpt["method"])
        cost = ckpt.get("method_cost", {})
        self.method.scoring_samples = float(cost.get("scoring_samples", 0.0))
        self.method.dense_gradient_steps = tuple(int(s) for s in cost.get("dense_gradient_steps", ()))
        ckpt_io.restore_rng(ckpt["rng"])
        log.info("resumed from %s at cycle %d epoch %d", path, self.state.cycle, self.state.epoch)
        return True

    # ------------------------------------------------------------------ one epoch
    def train_epoch(self, epoch: int) -> dict:
        model, opt, masks, method = self.model, self.optimizer, self.masks, self.method
        mask_grads = self.mask_grads
        model.train()
        # Per-step running sums cost ~6 tiny ops per step (~3% of a LeNet step on CPU); keep the
        # losses, predictions and labels instead and reduce them once per epoch.
        losses: list[torch.Tensor] = []
        preds: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        start = time.perf_counter()
        bar = self._progress(epoch)
        step = self.state.step
        lr = opt.param_groups[0]["lr"]
        # a cycle may start mid-epoch (LTH rewinding to step k): skip the batches before it
        first = step - epoch * self.steps_per_epoch
        for x, y in self.batches.epoch(self.cfg.seed, epoch, start=first):
            with self.autocast():
                out = self.forward(self.prepare(x))
                loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            method.before_optimizer_step(self.ctx, step + 1)  # dense gradients: RigL reads them here
            if mask_grads:
                # Adam/AdamW: masked gradients keep masked weights at exactly 0.0 as long as the
                # optimizer state is zero there (clean_optimizer_state on every mask change).
                # SGD (repro.optim.MaskedSGD) masks its update instead: no pass here.
                masks.mask_grads()
            opt.step()
            step += 1
            self.set_lr(step)
            if method.after_step(self.ctx, step):
                self._record_density(self.state.total_steps_run + step - self.state.step)
                # a method may have replaced the optimizer (mask_from rewinding: a fresh one)
                opt, mask_grads = self.optimizer, self.mask_grads
            losses.append(loss.detach())
            preds.append(out.detach().argmax(1))
            labels.append(y)
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    loss_now, acc_now, _ = epoch_means(losses[-20:], preds[-20:], labels[-20:])
                    bar.set_postfix(loss=f"{loss_now:.3f}", acc=f"{acc_now:.3f}")
        if bar is not None:
            bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        self.state.total_steps_run += step - self.state.step
        self.state.step = step
        train_loss, train_acc, seen = epoch_means(losses, preds, labels)
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(f"training loss became {train_loss} in epoch {epoch}: lower optim.lr or check the data")
        return {rec.TRAIN_LOSS: train_loss, rec.TRAIN_ACC: train_acc, rec.EPOCH_TIME: elapsed,
                rec.SAMPLES_PER_S: seen / elapsed, rec.LR: lr}

    def _progress(self, epoch: int):
        mode = self.cfg.progress
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        if mode != "bar":
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.epochs}", leave=False)

    # ------------------------------------------------------------------ the run
    def run(self) -> dict:
        """Train all cycles to the end; return the final metrics. Until the loop is over, finished
        or not, the process counts as a trainer for the auto thread rule (repro.threads)."""
        try:
            return self._run_cycles()
        finally:
            threads.release()

    def _run_cycles(self) -> dict:
        if not self.try_resume():
            self.state = LoopState()
        self.ctx.steps_before_cycle = self.state.total_steps_run - self.state.step
        self._last_masks = self.masks.state() if self.method.monotone else None
        if not self.state.started:
            self.method.before_training(self.ctx)
            self.state.started = True
            if self.masks.sparsity() > 0:
                self._record_density(0)
        while True:
            while self.state.epoch < self.epochs:
                self._one_epoch()
            target = self.method.cycle_target(self.state.cycle)
            if target is not None:
                self.on_cycle(self.final_metrics(), self.state.cycle, target)
            if not self.method.after_cycle(self.ctx, self.state.cycle):
                break
            self._record_density(self.state.total_steps_run)
            self._start_cycle(self.method.cycle_start_step())
            self.save_checkpoint()
        return self.final_metrics()

    def _start_cycle(self, step: int) -> None:
        """Position a new cycle at optimizer step ``step`` with a fresh optimizer and LR schedule."""
        self.state.cycle += 1
        self.ctx.steps_before_cycle = self.state.total_steps_run - step
        self.state.step = step
        self.state.epoch = step // self.steps_per_epoch
        self._new_optimizer(step)

    def _record_density(self, global_step: int) -> None:
        """Note a mask change at ``global_step`` (cost accounting) and report the new sparsity; every
        mask change passes here, so here a monotone method is checked to have revived no weight."""
        self._check_monotone()
        table = self.masks.density_table()  # one pass over the masks serves the cost log and the sparsity
        self.state.density_log.append((global_step, [r["density"] for r in table]))
        zeros = sum(r["weights"] - r["kept"] for r in table)
        params = sum(p.numel() for p in self.model.parameters())
        self.on_mask({rec.SPARSITY: zeros / self.masks.num_prunable, rec.SPARSITY_ALL: zeros / params,
                      rec.MASK_UPDATES: float(len(self.state.density_log))}, global_step)

    def _check_monotone(self) -> None:
        if not self.method.monotone:
            return
        now = self.masks.state()
        if self._last_masks is not None:
            revived = sum(int(((old == 0) & (new != 0)).sum()) for old, new in zip(self._last_masks, now))
            if revived:
                raise RuntimeError(f"pruner {self.method.name} declares monotone masks but revived {revived} "
                                   "weights: set monotone = False on the method and change masks through MaskSet.update")
        self._last_masks = now

    def _one_epoch(self) -> None:
        threads.recheck()  # trainers may have come or gone since the last epoch
        epoch = self.state.epoch
        metrics = self.train_epoch(epoch)
        self.method.after_epoch(self.ctx, epoch)
        last = epoch + 1 == self.epochs
        if last or (epoch + 1) % self.cfg.eval_every == 0:
            metrics[rec.TEST_LOSS], metrics[rec.TEST_ACC] = evaluate(
                self.model, self.test_split, self.normalize, self.cfg.eval_batch_size, self.prepare)
            if self.val_split is not None:
                metrics[rec.VAL_LOSS], metrics[rec.VAL_ACC] = evaluate(
                    self.model, self.val_split, self.normalize, self.cfg.eval_batch_size, self.prepare)
        metrics[rec.SPARSITY] = self.masks.sparsity()
        metrics[rec.SPARSITY_ALL] = self.masks.sparsity_all()
        metrics[rec.MASK_FINAL] = float(self.method.mask_is_final(self.state.step))
        metrics[rec.EPOCH] = epoch + 1
        metrics[rec.CYCLE] = self.state.cycle
        self.state.history.append(metrics)
        self.state.epoch = epoch + 1
        # log first, then checkpoint: a run killed between the two retrains this epoch on
        # resume and logs it again at the same step, which the tracker skips; the other
        # order would lose the epoch's metrics for good
        self._report(metrics)
        if self.cfg.checkpoint_every and (self.state.epoch % self.cfg.checkpoint_every == 0 or last):
            self.save_checkpoint()

    def _report(self, metrics: dict) -> None:
        """Log an epoch's metrics at step = optimizer steps so far over all cycles (epoch, cycle and
        mask_final stay in the history: the step says when)."""
        if self.cfg.progress != "none":
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in (rec.CYCLE, rec.MASK_FINAL))
            log.info("cycle %d | %s", self.state.cycle, shown)
        self.on_epoch({k: v for k, v in metrics.items() if k not in HISTORY_ONLY}, self.state.total_steps_run)

    def cost(self) -> dict:
        """What the subnetwork cost so far: steps, epochs and training FLOPs over all cycles
        (scoring passes included), and the inference FLOPs of the current mask."""
        density = dict(zip(self.masks.names, (r["density"] for r in self.masks.density_table())))
        steps = self.state.total_steps_run
        per_step = len(self.train_split) / self.steps_per_epoch  # mean batch (the last one may be short)
        flops = training_flops(self.macs, per_step, steps, self.state.density_log, self.masks.names,
                               scoring_samples=self.method.scoring_samples,
                               dense_gradient_steps=self.method.dense_gradient_steps)
        return {
            rec.COST_ITERATIONS: float(steps),
            rec.COST_EPOCHS: steps / self.steps_per_epoch,
            rec.COST_CYCLES: float(self.state.cycle + 1),
            rec.COST_TRAIN_FLOPS: flops,
            rec.COST_INFERENCE_FLOPS: forward_flops(self.macs, density),
            rec.COST_DENSE_CYCLE_FLOPS: 3 * forward_flops(self.macs) * len(self.train_split) * self.cfg.epochs,
        }

    def final_metrics(self) -> dict:
        """Headline numbers of the current cycle (:func:`repro.engine.evaluation.headline`), the
        mask's sparsity and size, and the cost so far."""
        return {
            **headline(self.state.history, self.state.cycle),
            rec.FINAL_SPARSITY: self.masks.sparsity(),
            rec.FINAL_SPARSITY_ALL: self.masks.sparsity_all(),
            rec.FINAL_SPARSITY_WEIGHTS: self.masks.sparsity_weights(),
            rec.NUM_PRUNABLE: float(self.masks.num_prunable),
            rec.NUM_PARAMS: float(sum(p.numel() for p in self.model.parameters())),
            rec.NUM_ZEROS: float(self.masks.num_zeros()),
            rec.LAYER_COLLAPSE: float(bool(self.masks.collapsed_layers())),
            rec.TOTAL_STEPS: float(self.state.total_steps_run),
            rec.MASK_UPDATES: float(len(self.state.density_log)),
            **self.cost(),
        }
