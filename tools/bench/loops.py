"""The training contenders, one epoch per call: the suite's own loop (:class:`repro.engine.Engine`,
dense or PMP, optionally stepping ``torch.optim.SGD``, or PMP under Adam fused or per-tensor), a
bare PyTorch loop, and the peer to beat (PMP with ``torch.nn.utils.prune`` hooks). Apart from the part that times them
(:mod:`bench.training`) because they are what is compared: a reader checks here that all of them
do the same work."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from repro.config import OptimConfig
from repro.data import SPECS, Dataset, Split
from repro.engine import Engine, LoopConfig
from repro.pruning.masks import MaskSet, pruned_count
from repro.pruning.methods import Method

from .specs import Settings


class TorchSGDEngine(Engine):
    """The suite's loop stepping ``torch.optim.SGD`` (the loop then masks gradients): what the suite's
    own SGD (:class:`repro.optim.MaskedSGD`) contributes to its ratios against loops that use torch's."""

    def build_optimizer(self, masks: dict[torch.Tensor, torch.Tensor] | None) -> torch.optim.Optimizer:
        o = self.optim_cfg
        return torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)


class TorchAdamEngine(Engine):
    """The suite's loop stepping torch's per-tensor Adam (``fused=False, foreach=False``), against
    the suite's own choice (:func:`repro.optim.make_optimizer`: fused on CPU): a pruned network's
    zero second moments send the per-tensor path's square root down MKL's slow path."""

    def build_optimizer(self, masks: dict[torch.Tensor, torch.Tensor] | None) -> torch.optim.Optimizer:
        o = self.optim_cfg
        return torch.optim.Adam(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay, fused=False,
                                foreach=False)


class SuiteLoop:
    """The suite's loop: :class:`Engine` with the dense or PMP method, one epoch per call."""

    def __init__(self, method: Method, model: nn.Module, dataset: Dataset, batch: int, epochs: int,
                 device: torch.device, settings: Settings, engine: type[Engine] = Engine,
                 optim: OptimConfig | None = None) -> None:
        loop = LoopConfig(epochs=epochs, batch_size=batch, seed=0, augment=settings.augment, progress="none",
                          precision=settings.precision, channels_last=settings.channels_last, compile=settings.compile,
                          checkpoint_every=0, checkpoint_path=None)
        optim = optim or OptimConfig(lr=settings.lr)
        self.engine = engine(model, dataset, method, MaskSet(model), optim, loop, device)
        method.before_training(self.engine.ctx)
        self.epoch = 0

    def __call__(self) -> int:
        self.engine.train_epoch(self.epoch)
        self.epoch += 1
        return len(self.engine.train_split)


class BareLoop:
    """A minimal PyTorch loop: randperm, slice, normalise, forward, backward, step."""

    def __init__(self, model: nn.Module, split: Split, dataset: str, batch: int, device: torch.device,
                 settings: Settings) -> None:
        self.model = model.to(device)
        self.images, self.labels = split.images.to(device), split.labels.to(device)
        self.batch = batch
        self.device = device
        mean, std = SPECS[dataset].mean, SPECS[dataset].std
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, weight_decay=5e-4)
        self.bf16 = settings.precision == "bf16"
        self.epoch = 0

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.epoch)
        order = torch.randperm(len(self.labels), generator=g).to(self.device)
        for i in range(0, len(order), self.batch):
            idx = order[i : i + self.batch]
            yield (self.images[idx].float() - self.mean) / self.std, self.labels[idx]

    def after_step(self) -> None:
        pass

    def __call__(self) -> int:
        self.model.train()
        seen = 0
        for x, y in self.batches():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.after_step()
            seen += len(y)
        self.epoch += 1
        return seen


class PruneHooksPMP(BareLoop):
    """The peer: PMP the common way. ``torch.nn.utils.prune.global_unstructured`` with
    L1Unstructured importance over the current (masked) weights, re-pruned every
    ``update_frequency`` steps on the same linear schedule; masks live in forward pre-hooks."""

    def __init__(self, model: nn.Module, split: Split, dataset: str, batch: int, device: torch.device,
                 settings: Settings, total_steps: int) -> None:
        super().__init__(model, split, dataset, batch, device, settings)
        self.params = [(m, "weight") for m in self.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.num_weights = sum(m.weight.numel() for m, _ in self.params)
        self.every = settings.update_frequency
        self.final = settings.final_sparsity
        self.total = total_steps
        self.step = 0
        self.pruned = 0

    def after_step(self) -> None:
        import torch.nn.utils.prune as prune

        self.step += 1
        if self.step % self.every and self.step != self.total:
            return
        want = pruned_count(self.final * min(1.0, self.step / self.total), self.num_weights)
        if want > self.pruned:
            prune.global_unstructured(self.params, pruning_method=prune.L1Unstructured, amount=want - self.pruned)
            self.pruned = want
