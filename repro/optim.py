"""The optimizers the loop steps, and an SGD that keeps masked weights at zero in its own update.

Why not ``torch.optim.SGD`` plus masked gradients: on CPU, torch's SGD takes its per-tensor
path, which reads and writes each weight-sized tensor four times per step (weight decay into a
fresh tensor, momentum scale, momentum add, update) and masking the gradients first adds a
fifth pass. :class:`MaskedSGD` does the same arithmetic in three passes and folds the mask
into the last one, ``w -= lr * m * buf``, so pruning adds one extra read instead of a pass.
``make bench`` times the suite's dense loop with both (``dense/dense-torchsgd``): 1.07-1.09 /
1.03-1.04 on LeNet-300-100 at batch 60 / 128, 0.99-1.01 on the convolution-bound LeNet-5 and
VGG-19, over two runs (results/bench/README.md).

Semantics: the arithmetic is torch's SGD (momentum, dampening, Nesterov, L2 weight decay, the
first momentum buffer a copy of the decayed gradient), so results match it up to float
rounding (``tests/test_optim.py``). Two differences, both harmless to the loop, which sets
gradients to None every step: ``step()`` consumes the gradients (``p.grad`` is overwritten
with intermediate terms), and the momentum buffer of a masked weight keeps accumulating its
gradient. That buffer is never applied (the update is masked), masks never revive a weight,
and :meth:`repro.pruning.masks.MaskSet.clean_optimizer_state` zeroes it at every mask change.

Adam and AdamW on CPU take torch's fused kernel (``fused=True``). Their per-tensor path takes
``exp_avg_sq.sqrt()`` through MKL's vectorised square root, which leaves its fast path for zero
and subnormal inputs; a pruned network's second moments are exactly zero at every masked
position (gradients masked, state zeroed at each mask change), so that path slows as sparsity
grows (a PMP run under LTH's Adam recipe spent a quarter of its time in that square root by
``perf record``, and its epochs grew longer as its ramp rose). The fused kernel
computes the same Adam update (results match the per-tensor path up to float rounding,
``tests/test_optim.py``) at one cost whatever the sparsity. Other devices keep torch's default.
A checkpoint's optimizer state is loaded with :func:`load_state`, which keeps the running
optimizer's kernel choice (a checkpoint written by the per-tensor path says ``fused=None``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class MaskedSGD(torch.optim.SGD):
    """``torch.optim.SGD`` whose update is multiplied by a 0/1 mask for the parameters in ``masks``.

    ``masks`` maps a parameter to a tensor of its shape, read at every step (a mask updated in
    place takes effect at the next step). ``foreach=None`` picks one kernel per tensor on CPU
    (fastest there: foreach has no fused CPU kernels) and ``torch._foreach_*`` elsewhere (one
    launch per op for all tensors on CUDA).
    """

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, *, foreach: bool | None = None,
                 masks: dict[torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, foreach=foreach)
        self.masks: dict[torch.Tensor, torch.Tensor] = dict(masks or {})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group.get("maximize") or group.get("differentiable"):
                raise NotImplementedError("MaskedSGD supports neither maximize nor differentiable")
            foreach = group["foreach"]
            if foreach is None:
                foreach = params[0].device.type != "cpu"
            (self._step_foreach if foreach else self._step_each)(group, params)
        return loss

    def _step_each(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, nesterov = group["weight_decay"], group["nesterov"]
        for p in params:
            d = p.grad
            if weight_decay:
                d.add_(p, alpha=weight_decay)
            if momentum:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d.clone()
                elif dampening:
                    buf.mul_(momentum).add_(d, alpha=1 - dampening)
                else:
                    torch.add(d, buf, alpha=momentum, out=buf)  # buf = momentum * buf + d, one pass
                if nesterov:
                    d.add_(buf, alpha=momentum)
                else:
                    d = buf
            mask = self.masks.get(p)
            if mask is None:
                p.add_(d, alpha=-lr)
            else:
                # (value * mask) * d + p: where the mask is 1, bit for bit what add_ gives, so a
                # masked run whose mask is all ones retraces the dense run exactly
                p.addcmul_(mask, d, value=-lr)

    def _step_foreach(self, group: dict, params: list[torch.Tensor]) -> None:
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, nesterov = group["weight_decay"], group["nesterov"]
        grads = [p.grad for p in params]
        if weight_decay:
            torch._foreach_add_(grads, params, alpha=weight_decay)
        updates = grads
        if momentum:
            bufs, old_bufs, old_grads = [], [], []
            for p, d in zip(params, grads):
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d.clone()
                else:
                    old_bufs.append(buf)
                    old_grads.append(d)
                bufs.append(buf)
            if old_bufs:
                torch._foreach_mul_(old_bufs, momentum)
                torch._foreach_add_(old_bufs, old_grads, alpha=1 - dampening)
            if nesterov:
                torch._foreach_add_(grads, bufs, alpha=momentum)
            else:
                updates = bufs
        plain_p, plain_u, masked_p, masked_m, masked_u = [], [], [], [], []
        for p, u in zip(params, updates):
            mask = self.masks.get(p)
            if mask is None:
                plain_p.append(p)
                plain_u.append(u)
            else:
                masked_p.append(p)
                masked_m.append(mask)
                masked_u.append(u)
        if plain_p:
            torch._foreach_add_(plain_p, plain_u, alpha=-lr)
        if masked_p:
            torch._foreach_addcmul_(masked_p, masked_m, masked_u, value=-lr)


#: param-group keys that say how a step is computed, not what it computes
IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")


def fused_on_cpu(params: list[torch.Tensor]) -> bool | None:
    """``fused`` for torch's Adam/AdamW: True when every parameter is a CPU float tensor (see the
    module doc), else None (torch's default for the device)."""
    if params and all(p.device.type == "cpu" and p.is_floating_point() for p in params):
        return True
    return None


def make_optimizer(params: Iterable[Any], optim: Any,
                   masks: dict[torch.Tensor, torch.Tensor] | None = None) -> torch.optim.Optimizer:
    """The optimizer ``optim.name`` names. SGD is :class:`MaskedSGD` (masks, if given, go into its
    update); Adam and AdamW are torch's (fused on CPU), and the loop masks their gradients instead."""
    params = list(params)
    if optim.name == "sgd":
        return MaskedSGD(params, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov,
                         weight_decay=optim.weight_decay, masks=masks)
    if optim.name == "adam":
        return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=fused_on_cpu(params))
    if optim.name == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=fused_on_cpu(params))
    raise ValueError(f"unknown optimizer '{optim.name}'")


def load_state(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> None:
    """``optimizer.load_state_dict``, keeping the running optimizer's kernel choice: torch copies
    every param-group key from the saved dict, so a checkpoint of the per-tensor path would turn
    a resumed run's fused Adam back into it."""
    kept = [{k: g[k] for k in IMPLEMENTATION_KEYS if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state_dict)
    for group, implementation in zip(optimizer.param_groups, kept, strict=True):
        group.update(implementation)


def masks_its_update(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` keeps masked weights at zero itself (the loop then skips masking gradients)."""
    return isinstance(optimizer, MaskedSGD) and bool(optimizer.masks)
