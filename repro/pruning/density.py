"""How a target sparsity is spread over layers: one ranking over all layers (``global``), the
same fraction in every layer (``layerwise``, alias ``uniform``), or Erdős–Rényi densities
(``er``, ``erk``).

Erdős–Rényi (Mocanu et al. 2018, SET) gives a layer with fan-in n_in and fan-out n_out a
density proportional to (n_in + n_out) / (n_in * n_out); the kernel variant ERK (Evci et
al. 2020, RigL) adds the kernel's height and width to both sums, so for a weight of shape
(out, in, kh, kw) the raw density is sum(shape) / prod(shape). One factor eps scales the raw
densities so the kept weights add up to the target; a layer whose density would pass 1 is
kept dense and eps is solved again without it (RigL's sparse_utils.get_sparsities, the
``erdos_renyi_kernel`` branch). Here, unlike RigL, a layer is never dense by fiat: a first
layer that must stay dense is left out of the prunable set (``pruner.exclude_first``).

Count rule: the float densities become integer counts of kept weights that add up to exactly
N - floor(s*N + 0.5) over the N prunable weights (largest remainders get the last few), so
every scope obeys the pinned global count; per layer the count is a pure function of the
shapes and s, which makes it checkable by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: the ways to spread sparsity over layers (``pruner.scope``)
SCOPES = ("global", "layerwise", "uniform", "er", "erk")
#: the scopes whose per-layer counts are fixed by the shapes alone
PER_LAYER = ("layerwise", "uniform", "er", "erk")


def pruned_count(sparsity: float, n: int) -> int:
    """How many of ``n`` weights are zero at ``sparsity``: floor(s * n + 0.5)."""
    return min(n, int(math.floor(sparsity * n + 0.5)))


def raw_density(shape: Sequence[int], kernel: bool) -> float:
    """Erdős–Rényi's unnormalised density of one weight: sum(dims) / prod(dims), over the two
    channel dims only (``er``) or over all dims, kernel included (``erk``)."""
    dims = list(shape) if kernel else list(shape[:2])
    return sum(dims) / math.prod(dims)


def er_densities(shapes: Sequence[Sequence[int]], sparsity: float, kernel: bool = True) -> list[float]:
    """Per-layer densities (in (0, 1]) that keep (1 - s) of all weights, Erdős–Rényi(-Kernel)."""
    sizes = [math.prod(s) for s in shapes]
    raw = [raw_density(s, kernel) for s in shapes]
    dense: set[int] = set()
    while True:
        rest = [i for i in range(len(shapes)) if i not in dense]
        budget = (1.0 - sparsity) * sum(sizes) - sum(sizes[i] for i in dense)
        eps = budget / sum(raw[i] * sizes[i] for i in rest) if rest else 0.0
        over = [i for i in rest if eps * raw[i] > 1.0]
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        top = max(raw[i] for i in over)
        dense |= {i for i in over if raw[i] == top}


def _apportion(wanted: Sequence[float], caps: Sequence[int], total: int) -> list[int]:
    """Integers <= caps close to ``wanted`` adding up to ``total``: floors first, then one more to
    the largest remainders (ties: the earlier layer), skipping full layers."""
    counts = [min(cap, int(math.floor(w))) for w, cap in zip(wanted, caps)]
    order = sorted(range(len(wanted)), key=lambda i: (-(wanted[i] - math.floor(wanted[i])), i))
    short = total - sum(counts)
    while short > 0:
        moved = False
        for i in order:
            if short and counts[i] < caps[i]:
                counts[i] += 1
                short -= 1
                moved = True
        if not moved:
            raise ValueError(f"cannot place {total} kept weights in layers of {list(caps)}")
    return counts


def zeros_per_layer(shapes: Sequence[Sequence[int]], sparsity: float, scope: str) -> list[int]:
    """How many weights of each layer are zero at ``sparsity`` under a per-layer ``scope``."""
    sizes = [math.prod(s) for s in shapes]
    if scope in ("layerwise", "uniform"):
        return [pruned_count(sparsity, n) for n in sizes]
    if scope not in ("er", "erk"):
        raise ValueError(f"scope '{scope}' has no fixed per-layer counts: use one of {', '.join(PER_LAYER)}")
    n = sum(sizes)
    keep = n - pruned_count(sparsity, n)
    densities = er_densities(shapes, sparsity, kernel=scope == "erk")
    kept = _apportion([d * size for d, size in zip(densities, sizes)], sizes, keep)
    return [size - k for size, k in zip(sizes, kept)]
