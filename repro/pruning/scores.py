"""Saliency scores as pure functions: one score tensor per prunable weight, higher = keep.

Scores that need data or gradients work on a deep copy of the model, so scoring never
changes the weights, BatchNorm statistics, masks or ``.grad`` of the model that training
starts from. Every copy first multiplies its prunable weights by their masks, so a score
sees the masked network; masked weights may score anything (usually 0), because
:meth:`repro.pruning.masks.MaskSet.prune_to` replaces their scores by -inf.

The prune-at-initialization criteria follow the papers and their official code:

* :func:`snip` -- Lee, Ajanthan & Torr, ICLR 2019 (namhoonlee/snip-public);
* :func:`grasp` -- Wang, Zhang & Grosse, ICLR 2020 (alecwangcq/GraSP);
* :func:`synflow` -- Tanaka, Kunin, Yamins & Ganguli, NeurIPS 2020 (ganguli-lab/Synaptic-Flow);
* :func:`random` and :func:`magnitude` -- the random and magnitude-at-init baselines.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from repro.pruning.masks import MaskSet

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def magnitude(weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """|w|: the magnitude criterion of PMP, GMP, LTH, one-shot pruning and magnitude at init."""
    return [w.detach().abs() for w in weights]


def random_seed(seed: int) -> int:
    """The seed of the random scores, derived from the run seed by a hash.

    ``torch.manual_seed(seed)`` also drew the initial weights; a generator seeded with the
    same number would replay the same bits, and the "random" scores could then correlate
    with |w|. Hashing the seed decorrelates the two streams.
    """
    digest = hashlib.sha256(f"repro.random-scores:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@torch.no_grad()
def random(weights: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """i.i.d. U(0, 1) scores, drawn on the CPU (the same on every device) from the run seed.

    Ranked globally they prune a uniformly random subset of all prunable weights; ranked
    layerwise, a uniformly random subset of each tensor at the same sparsity.
    """
    g = torch.Generator().manual_seed(random_seed(seed))
    return [torch.rand(w.shape, generator=g).to(w.device) for w in weights]


# ----------------------------------------------------------------------------- helpers


def _scoring_copy(model: nn.Module, masks: MaskSet) -> tuple[nn.Module, list[torch.Tensor]]:
    """A deep copy of ``model`` with masked weights zeroed and no gradients, and the copy's
    prunable weights in the order of ``masks``."""
    clone = copy.deepcopy(model)
    weights = []
    with torch.no_grad():
        for name in masks.names:
            module = clone.get_submodule(name)
            module.weight.mul_(module.weight_mask)
            weights.append(module.weight)
    for p in clone.parameters():
        p.grad = None
        p.requires_grad_(True)
    return clone, weights


def _take(batches: Batches, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    taken = list(itertools.islice(iter(batches), n))
    if len(taken) < n:
        raise ValueError(f"scoring needs {n} batches but the data gave only {len(taken)}")
    return taken


# ----------------------------------------------------------------------------- SNIP


def snip(model: nn.Module, masks: MaskSet, batches: Batches, *, num_batches: int = 1) -> list[torch.Tensor]:
    """SNIP connection sensitivity |dL/dm| = |g * w| for the multiplicative mask m (at m = 1
    on active weights), summed over the gradients of ``num_batches`` batches.

    As in the official code (``is_train=False`` while compressing), BatchNorm runs in
    inference mode, i.e. with its running statistics. The official score is also divided
    by its sum; that does not change the ranking and is left out.
    """
    clone, weights = _scoring_copy(model, masks)
    clone.eval()
    grads = [torch.zeros_like(w) for w in weights]
    for x, y in _take(batches, num_batches):
        loss = F.cross_entropy(clone(x), y)
        for acc, g in zip(grads, torch.autograd.grad(loss, weights)):
            acc += g
    return [(g * w).detach().abs() for g, w in zip(grads, weights)]


# ----------------------------------------------------------------------------- GraSP


def balanced_sample(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                    samples_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``samples_per_class`` examples of every class in stream order, grouped by
    class (class 0 first), as GraSP's ``GraSP_fetch_data`` returns them."""
    xs: list[list[torch.Tensor]] = [[] for _ in range(num_classes)]
    ys: list[list[torch.Tensor]] = [[] for _ in range(num_classes)]
    have = [0] * num_classes
    for x, y in batches:
        for c in range(num_classes):
            need = samples_per_class - have[c]
            if need <= 0:
                continue
            idx = torch.nonzero(y == c).view(-1)[:need]
            if len(idx):
                xs[c].append(x[idx])
                ys[c].append(y[idx])
                have[c] += len(idx)
        if min(have) >= samples_per_class:
            break
    else:
        short = [c for c in range(num_classes) if have[c] < samples_per_class]
        raise ValueError(f"GraSP needs {samples_per_class} samples per class; the data ran out for classes {short}")
    return torch.cat([torch.cat(v) for v in xs]), torch.cat([torch.cat(v) for v in ys])


def _num_classes(clone: nn.Module, x: torch.Tensor) -> int:
    was_training = clone.training
    clone.eval()
    with torch.no_grad():
        width = clone(x[:1]).shape[1]
    clone.train(was_training)
    return int(width)


def grasp_hessian_gradient(model: nn.Module, masks: MaskSet, batches: Batches, *, temperature: float = 200.0,
                           samples_per_class: int = 10, num_iters: int = 1,
                           num_classes: int | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """GraSP's Hessian-gradient product Hg over the prunable weights, on a copy of the model.

    As in the official code: the model is in train mode (BatchNorm uses batch statistics),
    logits are divided by ``temperature``, and each of ``num_iters`` iterations draws a
    class-balanced sample of ``samples_per_class`` per class, cut into two halves. With
    L = sum over all halves of the mean cross-entropy, g = dL/dw (no graph) and
    Hg = d(g . dL/dw)/dw by double backward, i.e. Hg = (1/2) d||dL/dw||^2 / dw.

    Returns (weights of the copy, Hg), both in the order of ``masks``.
    """
    clone, weights = _scoring_copy(model, masks)
    clone.train()
    stream = iter(batches)
    halves = []
    for _ in range(num_iters):
        if num_classes is None:
            first = next(stream, None)
            if first is None:
                raise ValueError("GraSP got no scoring data")
            num_classes = _num_classes(clone, first[0])
            stream = itertools.chain([first], stream)
        x, y = balanced_sample(stream, num_classes, samples_per_class)
        n = len(y)
        halves += [(x[: n // 2], y[: n // 2]), (x[n // 2 :], y[n // 2 :])]

    grad = [torch.zeros_like(w) for w in weights]
    for x, y in halves:
        loss = F.cross_entropy(clone(x) / temperature, y)
        for acc, g in zip(grad, torch.autograd.grad(loss, weights)):
            acc += g
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in halves:
        loss = F.cross_entropy(clone(x) / temperature, y)
        g_f = torch.autograd.grad(loss, weights, create_graph=True)
        z = sum((g.detach() * gf).sum() for g, gf in zip(grad, g_f))
        for acc, h in zip(hg, torch.autograd.grad(z, weights)):
            acc += h
    return [w.detach() for w in weights], [h.detach() for h in hg]


def grasp(model: nn.Module, masks: MaskSet, batches: Batches, *, temperature: float = 200.0, samples_per_class: int = 10,
          num_iters: int = 1, num_classes: int | None = None) -> list[torch.Tensor]:
    """GraSP, NEGATED to fit "higher = keep": returns w * Hg.

    The GraSP score of the paper and the official code is S = -w * Hg, and GraSP removes
    the weights with the HIGHEST S: by first order, zeroing w_q changes ||g||^2 by
    -2 w_q (Hg)_q = 2 S_q, so those are the weights whose removal reduces the gradient norm
    least (or raises it most). Keeping the highest -S = w * Hg removes exactly those.
    See :func:`grasp_hessian_gradient` for how Hg is computed.
    """
    weights, hg = grasp_hessian_gradient(model, masks, batches, temperature=temperature,
                                         samples_per_class=samples_per_class, num_iters=num_iters, num_classes=num_classes)
    return [w * h for w, h in zip(weights, hg)]


# ----------------------------------------------------------------------------- SynFlow


def synflow(model: nn.Module, masks: MaskSet, input_shape: Sequence[int], *,
            dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """One round of SynFlow: |dR/dtheta * theta| with R = sum of the outputs of the
    linearised network (every parameter and buffer replaced by its absolute value, masked
    weights zero) on one all-ones input of ``input_shape``.

    Data-free. As in the official code the model is in eval mode, so BatchNorm applies its
    (absolute) running statistics -- on a fresh model mean 0 and variance 1. The copy is
    cast to ``dtype`` (float64 by default, against overflow of R in deep networks; the
    official code keeps float32). Scores are returned in ``dtype``; callers that rank in
    float32 should rescale first (see ``repro.pruning.at_init``). The iterative schedule
    lives in the method, which re-masks between rounds.
    """
    clone, _ = _scoring_copy(model, masks)
    clone.to(dtype)
    clone.eval()
    with torch.no_grad():
        for t in clone.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    weights = [clone.get_submodule(name).weight for name in masks.names]
    device = weights[0].device
    x = torch.ones((1, *input_shape), dtype=dtype, device=device)
    r = clone(x).sum()
    grads = torch.autograd.grad(r, weights)
    return [(g * w).detach().abs() for g, w in zip(grads, weights)]
