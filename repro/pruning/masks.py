"""Masks over the prunable weights: exact top-k selection, in-place application, statistics.

The prunable set is the weight of every Conv2d and Linear layer (optionally not the
first and/or last such layer); biases and BatchNorm are never pruned. Each mask is a
buffer ``weight_mask`` on its module, so it travels with ``state_dict`` and checkpoints.

Count rule (pinned by tests): at sparsity s, global selection prunes exactly
``floor(s * N + 0.5)`` of the N prunable weights; layerwise selection applies the same
rule to each tensor, and the Erdős–Rényi scopes (``er``, ``erk``) fix each layer's count
from the shapes (:mod:`repro.pruning.density`) with the same total. Among active weights
the highest scores are kept; pruned weights score -inf, so :meth:`MaskSet.prune_to` never
revives a weight. Ties are broken by position (the earlier flat index is kept), which makes
selection deterministic. Methods whose masks regrow (SET, RigL) change masks through
:meth:`MaskSet.update`, the one way to revive a weight, which also resets the optimizer
state at every position it changes.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from repro.pruning.density import PER_LAYER, pruned_count, zeros_per_layer

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)
#: the optimizer state that lives per weight (SGD momentum, Adam/AdamW moments)
PER_WEIGHT_STATE = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

__all__ = ["MaskSet", "check_integrity", "pruned_count", "select_global", "select_topk"]


@dataclass
class Layer:
    name: str
    module: nn.Module

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def mask(self) -> torch.Tensor:
        return self.module.weight_mask


class MaskSet:
    """The prunable layers of a model and their masks (1 = kept, 0 = pruned)."""

    def __init__(self, model: nn.Module, *, exclude_first: bool = False, exclude_last: bool = False,
                 exclude: Sequence[str] = ()) -> None:
        layers = [Layer(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
        if exclude_first:
            layers = layers[1:]
        if exclude_last:
            layers = layers[:-1]
        # layers named by a pattern are never pruned (LTH keeps ResNet shortcuts dense: '*downsample*')
        layers = [layer for layer in layers if not any(fnmatch.fnmatchcase(layer.name, pat) for pat in exclude)]
        if not layers:
            raise ValueError("the model has no prunable Conv2d/Linear weights left")
        for layer in layers:
            if not hasattr(layer.module, "weight_mask"):
                layer.module.register_buffer("weight_mask", torch.ones_like(layer.module.weight))
        self.layers = layers
        self.model = model

    # ------------------------------------------------------------------ basic facts
    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def masks(self) -> list[torch.Tensor]:
        """The live ``weight_mask`` buffers, looked up on every call: ``model.to(device)`` and
        ``channels_last`` replace buffers with new tensors, and a cached list would go on
        updating the old ones while checkpoints save the new ones."""
        return [layer.mask for layer in self.layers]

    @property
    def weights(self) -> list[torch.Tensor]:
        return [layer.weight for layer in self.layers]

    @property
    def num_prunable(self) -> int:
        return sum(m.numel() for m in self.masks)

    def num_zeros(self) -> int:
        return int(sum((m == 0).sum().item() for m in self.masks))

    def sparsity(self) -> float:
        """Fraction of prunable weights that are masked."""
        return self.num_zeros() / self.num_prunable

    def sparsity_weights(self) -> float:
        """Masked weights over every Conv2d/Linear weight, pruned or not (LTH's denominator:
        biases and BN excluded, layers kept dense included)."""
        total = sum(m.weight.numel() for m in self.model.modules() if isinstance(m, PRUNABLE_TYPES))
        return self.num_zeros() / total

    def sparsity_all(self) -> float:
        """Masked weights over all model parameters (biases, BN and unpruned layers included)."""
        total = sum(p.numel() for p in self.model.parameters())
        return self.num_zeros() / total

    def density_table(self) -> list[dict]:
        rows = []
        for layer in self.layers:
            kept = int(layer.mask.sum().item())
            n = layer.mask.numel()
            rows.append({"layer": layer.name, "shape": "x".join(map(str, layer.weight.shape)), "weights": n,
                         "kept": kept, "density": kept / n})
        return rows

    def collapsed_layers(self) -> list[str]:
        """Layers with no weight left: the network can no longer pass signal through them."""
        return [layer.name for layer in self.layers if not bool(layer.mask.any())]

    def state(self) -> list[torch.Tensor]:
        return [m.detach().clone() for m in self.masks]

    def load(self, masks: Iterable[torch.Tensor]) -> None:
        for dst, src in zip(self.masks, masks, strict=True):
            dst.copy_(src)
        self.apply()

    # ------------------------------------------------------------------ the hot path
    @torch.no_grad()
    def apply(self) -> None:
        """Zero the masked weights in place (after every mask change; between changes the optimizer
        keeps them at zero, see ``repro.optim``)."""
        torch._foreach_mul_(self.weights, self.masks)

    @torch.no_grad()
    def mask_grads(self) -> None:
        """Zero the gradients of masked weights, so optimizer state never sees them."""
        grads = [w.grad for w in self.weights]
        if any(g is None for g in grads):
            return
        if grads[0].device.type == "cpu":
            # CPU: foreach has no fused kernel here and measured ~10 us/step slower on LeNet-300-100
            for g, m in zip(grads, self.masks):
                g.mul_(m)
        else:
            torch._foreach_mul_(grads, self.masks)  # one launch for all layers

    @torch.no_grad()
    def clean_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero momentum / Adam moments at masked positions after a mask change."""
        for w, m in zip(self.weights, self.masks):
            state = optimizer.state.get(w)
            if not state:
                continue
            for key in PER_WEIGHT_STATE:
                buf = state.get(key)
                if isinstance(buf, torch.Tensor) and buf.shape == m.shape:
                    buf.mul_(m)

    @torch.no_grad()
    def reset_optimizer_state(self, optimizer: torch.optim.Optimizer, where: list[torch.Tensor]) -> None:
        """Zero momentum / Adam moments where ``where`` (one bool tensor per layer) is True."""
        for w, changed in zip(self.weights, where, strict=True):
            state = optimizer.state.get(w)
            if not state:
                continue
            for key in PER_WEIGHT_STATE:
                buf = state.get(key)
                if isinstance(buf, torch.Tensor) and buf.shape == changed.shape:
                    buf.masked_fill_(changed, 0.0)

    @torch.no_grad()
    def update(self, new_masks: list[torch.Tensor], optimizer: torch.optim.Optimizer | None = None
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Replace the masks by ``new_masks``, reviving weights where they say so: the one API
        that may regrow. Every changed position, dropped or grown, gets clean optimizer state
        (no momentum or Adam moment carried into a regrown weight, none left on a dropped one);
        dropped weights become 0.0 and grown ones start at their current value (0.0, since a
        masked weight is zero). Returns the (dropped, grown) positions as bool tensors per layer.
        """
        if len(new_masks) != len(self.layers):
            raise ValueError(f"got {len(new_masks)} masks for {len(self.layers)} prunable layers")
        dropped, grown = [], []
        for dst, src in zip(self.masks, new_masks):
            src = src.to(dst.device, dst.dtype)
            dropped.append((dst != 0) & (src == 0))
            grown.append((dst == 0) & (src != 0))
            dst.copy_(src)
        if optimizer is not None:
            self.reset_optimizer_state(optimizer, [d | g for d, g in zip(dropped, grown)])
        self.apply()
        return dropped, grown

    # ------------------------------------------------------------------ selection
    @torch.no_grad()
    def prune_to(self, scores: list[torch.Tensor], sparsity: float, *, scope: str = "global") -> None:
        """Keep the highest-scoring active weights so that exactly the pinned count is pruned.

        Masked weights are never revived: their scores are replaced by -inf. Raising the
        sparsity is the only direction; asking for less than the current sparsity keeps
        the current mask.
        """
        if len(scores) != len(self.masks):
            raise ValueError(f"got {len(scores)} score tensors for {len(self.masks)} prunable layers")
        if scope == "global":
            new = _keep_global(scores, self.masks, sparsity)  # float32 0/1 views of one flat tensor
        elif scope in PER_LAYER:
            counts = zeros_per_layer([m.shape for m in self.masks], sparsity, scope)
            new = [select_topk(s, m, k) for s, m, k in zip(scores, self.masks, counts)]
        else:
            raise ValueError(f"unknown scope '{scope}': use global, layerwise, uniform, er or erk")
        for dst, src in zip(self.masks, new):
            dst.copy_(src)
        self.apply()


def _active_scores(score: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    s = score.detach().reshape(-1).to(torch.float32)
    return torch.where(mask.reshape(-1) != 0, s, -math.inf)


def select_topk(score: torch.Tensor, mask: torch.Tensor, num_pruned: int) -> torch.Tensor:
    """One tensor: keep its ``numel - num_pruned`` best active scores (ties: earlier index wins)."""
    flat = _active_scores(score, mask)
    keep = flat.numel() - num_pruned
    out = torch.zeros_like(flat)
    if keep > 0:
        # A stable descending sort breaks ties by position; topk's tie order is unspecified.
        idx = torch.sort(flat, descending=True, stable=True).indices[:keep]
        out[idx] = 1.0
    return (out * mask.reshape(-1)).view_as(mask)


#: the strided sample that brackets the global threshold holds at most this many values (see ``_kth_smallest``)
SAMPLE_SIZE = 1 << 16
#: the bracket spans the answer's expected sample rank +- MARGIN * sqrt(sample size) (+ 8). For a random
#: layout that rank has a standard deviation of at most sqrt(s)/2, so 2.5 is 5 of them (a miss, which
#: costs one full ``kthvalue``, about once per million calls); a narrower bracket leaves fewer values
#: to collect and rank: ~20% faster than 4.0 on LeNet-300-100 and VGG-19 (2-core VM)
MARGIN = 2.5
#: pruned weights' key in the fast global path: below every finite score, and finite, so that
#: float arithmetic (no bool tensors, no ``where``) can build the keys
SENTINEL = torch.finfo(torch.float32).max


def _kthvalue(t: torch.Tensor, k: int) -> torch.Tensor:
    return torch.kthvalue(t.cpu() if t.device.type == "mps" else t, k).values.to(t.device)


#: counting and extraction passes work through the keys in pieces of this many values: the 0/1
#: buffers stay small (and in cache), and float32 counts of a piece are exact (< 2^24)
CHUNK = 1 << 20


def _count(indicator: torch.Tensor) -> torch.Tensor:
    """The number of ones in a float 0/1 tensor, exactly: float32 sums per piece, added in float64."""
    return torch.stack([c.sum() for c in indicator.split(CHUNK)]).to(torch.float64).sum()


def _kth_smallest(parts: list[torch.Tensor], r: int, sample_size: int | None = None) -> torch.Tensor:
    """The r-th smallest value (1-based) over the concatenation of the 1-D ``parts``: exactly the value
    ``kthvalue(cat(parts), r)`` returns, without partially sorting all N values.

    A strided sample brackets the answer between two of its quantiles (lo, hi]; one pass counts
    the values <= lo and <= hi and collects those inside (lo, hi]; if the bracket holds rank r,
    ``kthvalue`` ranks only those. If it misses (adversarial layouts, NaN), one ``kthvalue`` over
    everything answers: never wrong, only slower. NaN sorts last in both paths. The pass writes
    float 0/1 indicators, a piece at a time: on CPU, comparisons into bool tensors are several
    times slower, and whole-length buffers would cost memory.
    """
    x = parts[0] if len(parts) == 1 else torch.cat(parts)
    n = x.numel()
    size = sample_size or min(SAMPLE_SIZE, 16 * math.isqrt(n))
    stride = n // max(1, size)
    if stride > 1:
        sample = x[::stride].contiguous()
        s = sample.numel()
        pos = (r - 0.5) * s / n  # where rank r falls in the sample (0-based)
        margin = MARGIN * math.sqrt(s) + 8.0
        lo = _kthvalue(sample, min(s, max(1, int(pos - margin) + 1)))
        hi = _kthvalue(sample, min(s, max(1, int(pos + margin) + 1)))
        upto_lo = torch.empty(min(n, CHUNK), dtype=torch.float32, device=x.device)
        upto_hi = torch.empty_like(upto_lo)
        counts, inside = [], []
        for piece in x.split(CHUNK):
            a = torch.le(piece, lo, out=upto_lo[: piece.numel()])
            b = torch.le(piece, hi, out=upto_hi[: piece.numel()])
            counts += [a.sum(), b.sum()]
            inside.append(piece[b.sub_(a).bool()])  # (lo, hi]
        n_lo, n_hi = (int(c) for c in torch.stack(counts).view(-1, 2).to(torch.float64).sum(0).tolist())
        if n_lo < r <= n_hi:
            return _kthvalue(torch.cat(inside), r - n_lo)
        del inside
        if r <= n_lo:
            below = torch.stack([torch.lt(p, lo, out=upto_lo[: p.numel()]).sum() for p in x.split(CHUNK)])
            if int(below.to(torch.float64).sum()) < r:
                return lo  # rank r falls among the ties at lo (e.g. the -inf of pruned weights)
    return _kthvalue(x, r)


def select_global(scores: list[torch.Tensor], masks: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """All tensors at once: keep the N - floor(s N + 0.5) best active scores over the union.

    The threshold (the keep-th largest active score) is found exactly by ``_kth_smallest``
    (O(N), no 2^24 limit as ``quantile`` has); weights at or above it are kept, and when more
    weights tie at the threshold than there are slots, the earlier positions win.
    """
    return [k.to(m.dtype) for k, m in zip(_keep_global(scores, masks, sparsity), masks)]


def _keep_global(scores: list[torch.Tensor], masks: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """``select_global`` as float32 0/1 tensors shaped like ``masks`` (views of one flat tensor).

    Fast path: key = score where active, -SENTINEL where pruned, built by float arithmetic;
    t = the keep-th largest key; keep key >= t, and where more than ``keep`` keys reach t, drop
    the latest ties at t. That is exactly the rule whenever every key is finite and t is above
    the sentinel. Otherwise (NaN or infinite scores, thresholds among pruned weights) the
    general path below decides. Extra memory: one float32 copy of the scores, plus buffers of
    CHUNK values.
    """
    sizes = [m.numel() for m in masks]
    n = sum(sizes)
    keep = n - pruned_count(sparsity, n)
    if keep <= 0:
        return [torch.zeros(m.shape, dtype=torch.float32, device=m.device) for m in masks]
    key = torch.empty(n, dtype=torch.float32, device=masks[0].device)
    for s, m, chunk in zip(scores, masks, torch.split(key, sizes)):
        m = m.reshape(-1)
        torch.mul(m, SENTINEL, out=chunk).sub_(SENTINEL)  # 0 where active, -SENTINEL where pruned
        chunk.addcmul_(s.detach().reshape(-1).to(torch.float32), m)  # + score where active (+0 where pruned)
    # one reduction: max is NaN if any key is NaN (a NaN or infinite score, pruned or not), inf if any is inf
    if math.isfinite(float(key.max())):
        threshold = _kth_smallest([key], n - keep + 1)
        if float(threshold) > -SENTINEL:
            kept = torch.ge(key, threshold, out=key)
            surplus = int(_count(kept)) - keep
            if surplus > 0:
                # More active weights tie at the threshold than there are slots (common over
                # millions of float32 magnitudes): the latest ties lose.
                at_threshold = [(sc.detach().reshape(-1).to(torch.float32) == threshold) & (m.reshape(-1) != 0)
                                for sc, m in zip(scores, masks)]
                starts = itertools.accumulate([0, *sizes[:-1]])
                ties = torch.cat([torch.nonzero(t).view(-1) + at for t, at in zip(at_threshold, starts)])
                kept[ties[ties.numel() - surplus:]] = 0.0
            return [k.view(m.shape) for k, m in zip(torch.split(kept, sizes), masks)]
    del key
    return [k.float() for k in _keep_global_general(scores, masks, keep)]


def _keep_global_general(scores: list[torch.Tensor], masks: list[torch.Tensor], keep: int) -> list[torch.Tensor]:
    """The rule for any scores (NaN, infinities, ties at the threshold), as bool tensors."""
    sizes = [m.numel() for m in masks]
    n = sum(sizes)
    flat = torch.empty(n, dtype=torch.float32, device=masks[0].device)
    pruned = torch.full((), -math.inf, device=flat.device)
    for s, m, chunk in zip(scores, masks, torch.split(flat, sizes)):
        torch.where(m.reshape(-1) != 0, s.detach().reshape(-1).to(torch.float32), pruned, out=chunk)
    # the keep-th largest value = the (n - keep + 1)-th smallest
    threshold = _kth_smallest([flat], n - keep + 1)
    kept = flat >= threshold
    # More weights may tie at the threshold than there are slots: the latest ties lose.
    surplus = int(torch.count_nonzero(kept).item()) - keep
    if surplus > 0:
        ties = torch.nonzero(flat == threshold).view(-1)
        kept[ties[ties.numel() - surplus:]] = False
    del flat
    # Pruned weights score -inf: they can be kept only through ties at a threshold of -inf (or NaN).
    if not bool(threshold > -math.inf):
        kept &= torch.cat([m.reshape(-1) != 0 for m in masks])
    return [k.view(m.shape) for k, m in zip(torch.split(kept, sizes), masks)]


def check_integrity(masks: MaskSet, sparsity: float, scope: str) -> None:
    """The end-of-run invariants: weights are zero exactly where masked, and the number of
    zeros follows the pinned count rule. Raises AssertionError naming what broke."""
    for layer in masks.layers:
        leaked = int(((layer.weight != 0) & (layer.mask == 0)).sum().item())
        if leaked:
            raise AssertionError(f"{leaked} masked weights of {layer.name} are not zero")
    if scope in PER_LAYER:
        wants = zeros_per_layer([m.shape for m in masks.masks], sparsity, scope)
        for layer, want in zip(masks.layers, wants):
            zeros = int((layer.mask == 0).sum().item())
            if zeros != want:
                raise AssertionError(f"{layer.name}: {zeros} pruned weights, the rule says {want}")
    else:
        zeros, want = masks.num_zeros(), pruned_count(sparsity, masks.num_prunable)
        if zeros != want:
            raise AssertionError(f"{zeros} pruned weights, the rule floor(s*N+0.5) says {want}")
