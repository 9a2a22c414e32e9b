"""The cost of finding a subnetwork, in FLOPs, from layer shapes and per-step densities.

Convention (as in RigL, Evci et al. 2020, appendix H):
- a Conv2d/Linear layer's forward pass costs 2 x its multiply-accumulates per sample
  (a MAC = one multiply + one add), scaled by the layer's weight density (sparse
  kernels are assumed to skip pruned weights);
- one training step costs 3 x the forward cost per sample (forward, and a backward pass
  of twice the forward: gradients w.r.t. activations and w.r.t. weights);
- BatchNorm, activations, pooling and the loss are not counted (they are small next to
  the convolutions and do not change with sparsity);
- scoring passes of prune-at-init methods are counted as dense training steps over the
  samples they touch (SNIP: the scoring batches; GraSP: twice its sample; SynFlow: one
  all-ones sample per round);
- a step whose backward pass computes the dense weight gradient (RigL's mask updates, every
  delta_t steps) costs 2 x the sparse forward + 1 x the dense forward per sample instead of
  3 x the sparse forward (RigL appendix H: (3 f_S dT + 2 f_S + f_D) / (dT + 1) per step on
  average); every other step of a sparse-to-sparse method is an ordinary sparse step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from repro.pruning.masks import PRUNABLE_TYPES


def layer_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Multiply-accumulates per sample of every Conv2d/Linear layer, by module name."""
    macs: dict[str, int] = {}
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, inputs, output) -> None:
            w = module.weight
            if isinstance(module, nn.Conv2d):
                spatial = output.shape[2] * output.shape[3]
                macs[name] = int(w.numel() * spatial)  # each output pixel: one MAC per weight
            else:
                macs[name] = int(w.numel())
        return record

    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return macs


def forward_flops(macs: dict[str, int], density: dict[str, float] | None = None) -> float:
    """Forward FLOPs per sample at the given per-layer densities (missing layers are dense)."""
    density = density or {}
    return float(sum(2 * m * density.get(name, 1.0) for name, m in macs.items()))


def training_flops(macs: dict[str, int], batch_size: float, total_steps: int,
                   density_log: Sequence[tuple[int, Sequence[float]]], prunable: Sequence[str],
                   scoring_samples: float = 0.0, dense_gradient_steps: Sequence[int] = ()) -> float:
    """Training FLOPs over ``total_steps`` steps of ``batch_size`` samples, each step costed at the
    densities in force: ``density_log`` lists (step, per-layer densities of ``prunable``) at every
    mask change, in order; before its first entry the network is dense. Each of
    ``dense_gradient_steps`` (1-based global steps) adds f_D - f_S per sample, at that step's
    densities, for its dense weight gradient."""
    dense_step = 3 * forward_flops(macs) * batch_size
    total = 0.0
    prev_step, prev_cost = 0, dense_step
    for step, densities in density_log:
        step = min(step, total_steps)
        total += (step - prev_step) * prev_cost
        prev_step = step
        prev_cost = 3 * forward_flops(macs, dict(zip(prunable, densities))) * batch_size
    total += (total_steps - prev_step) * prev_cost
    dense_forward = forward_flops(macs)
    for step in dense_gradient_steps:
        # the densities in force during step `step`: the last mask change at a step before it
        before = [d for s, d in density_log if s < step]
        sparse_forward = forward_flops(macs, dict(zip(prunable, before[-1]))) if before else dense_forward
        total += (dense_forward - sparse_forward) * batch_size
    return total + 3 * dense_forward * scoring_samples
