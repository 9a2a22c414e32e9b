"""Global selection's fast threshold (sample bracket + counting) is exact on every path it can take."""

from __future__ import annotations

import math
import random

import pytest
import torch

from repro.pruning import masks as M


@pytest.fixture(autouse=True, params=[M.CHUNK, 37], ids=["one-piece", "pieces-of-37"])
def chunk(request, monkeypatch):
    """Every test also runs with the counting pass cut into many small pieces."""
    monkeypatch.setattr(M, "CHUNK", request.param)
    return request.param


def random_parts(rng: random.Random, gen: torch.Generator, *, nan: bool) -> list[torch.Tensor]:
    kind = rng.choice(["normal", "few-values", "constant", "infinities", "nan" if nan else "normal"])
    parts = []
    for _ in range(rng.randint(1, 5)):
        n = rng.randint(1, 3000)
        if kind == "few-values":
            x = torch.randint(0, rng.choice([2, 5, 40]), (n,), generator=gen).float()
        elif kind == "constant":
            x = torch.ones(n)
        else:
            x = torch.randn(n, generator=gen)
        if kind == "infinities":
            x[torch.rand(n, generator=gen) < 0.2] = -math.inf
            x[torch.rand(n, generator=gen) < 0.05] = math.inf
        if kind == "nan":
            x[torch.rand(n, generator=gen) < 0.02] = math.nan
        parts.append(x)
    return parts


@pytest.mark.parametrize("sample_size", [4, 16, 64, 1024])
def test_kth_smallest_equals_kthvalue_of_the_concatenation(sample_size):
    rng, gen = random.Random(sample_size), torch.Generator().manual_seed(sample_size)
    for _ in range(150):
        parts = random_parts(rng, gen, nan=True)
        flat = torch.cat(parts)
        r = rng.randint(1, flat.numel())
        got = M._kth_smallest(parts, r, sample_size=sample_size)
        want = torch.kthvalue(flat, r).values
        assert torch.equal(got, want) or (bool(got.isnan()) and bool(want.isnan())), (r, got, want)


def reference(scores: list[torch.Tensor], masks: list[torch.Tensor], sparsity: float) -> torch.Tensor:
    """Keep the best active scores by a stable descending sort (ties: earlier position), as the rule says."""
    flat = torch.cat([torch.where(m.flatten() != 0, s.flatten(), -math.inf) for s, m in zip(scores, masks)])
    active = torch.cat([m.flatten() != 0 for m in masks])
    keep = flat.numel() - M.pruned_count(sparsity, flat.numel())
    out = torch.zeros(flat.numel(), dtype=torch.bool)
    if keep > 0:
        out[torch.sort(flat, descending=True, stable=True).indices[:keep]] = True
    return out & active


@pytest.mark.parametrize("sample_size", [32, 1 << 16])
def test_select_global_matches_a_stable_sort(monkeypatch, sample_size):
    monkeypatch.setattr(M, "SAMPLE_SIZE", sample_size)  # 32: small inputs take the sampled bracket too
    rng, gen = random.Random(sample_size), torch.Generator().manual_seed(7)
    for _ in range(150):
        scores = random_parts(rng, gen, nan=False)
        masks = [(torch.rand(s.numel(), generator=gen) > rng.choice([0.0, 0.3, 0.9])).float() for s in scores]
        sparsity = rng.choice([0.0, 0.1, 0.5, 0.9, 0.99, 1.0, rng.random()])
        out = M.select_global(scores, masks, sparsity)
        assert all(o.dtype == m.dtype and o.shape == m.shape for o, m in zip(out, masks))
        assert torch.equal(torch.cat([o.flatten() for o in out]).bool(), reference(scores, masks, sparsity))


def test_continuous_scores_take_the_fast_path_and_match_the_rule(monkeypatch):
    """Distinct finite scores never need the general path; the float-arithmetic keys give the same masks."""
    calls = []
    general = M._keep_global_general
    monkeypatch.setattr(M, "_keep_global_general", lambda *a: calls.append(1) or general(*a))
    gen = torch.Generator().manual_seed(3)
    for sparsity in (0.0, 0.3, 0.5, 0.9, 0.999):
        scores = [torch.randn(300, 200, generator=gen).abs(), torch.randn(50, 3, 3, 3, generator=gen)]
        masks = [(torch.rand(s.shape, generator=gen) > 0.1).float() for s in scores]  # ~10% already pruned
        fresh = [torch.ones_like(s) for s in scores]
        for m in (masks, fresh):
            if sparsity < 0.2 and m is masks:
                continue  # a cut among the pruned weights is the general path's case
            out = M.select_global(scores, m, sparsity)
            assert torch.equal(torch.cat([o.flatten() for o in out]).bool(), reference(scores, m, sparsity))
    assert calls == []


@pytest.mark.parametrize("case", ["tie-at-threshold", "tie-across-layers", "nan-pruned", "inf-active",
                                  "threshold-among-pruned"])
def test_each_case_takes_its_path_and_follows_the_rule(monkeypatch, case):
    """Ties at the threshold stay on the fast path (latest ties lose); what it cannot decide goes
    to the general path."""
    calls = []
    general = M._keep_global_general
    monkeypatch.setattr(M, "_keep_global_general", lambda *a: calls.append(1) or general(*a))
    scores = [torch.arange(20, dtype=torch.float32), torch.arange(20, 40, dtype=torch.float64)]
    masks = [torch.ones(20), torch.ones(20)]
    sparsity = 0.5
    if case == "tie-at-threshold":
        scores[1][8:12] = 28.0  # 4 equal scores straddle the cut at 20 of 40: earlier positions win
    elif case == "tie-across-layers":
        scores[0][15:] = 25.0  # 5 + 6 equal scores over both layers, the cut among them
        scores[1][:6] = 25.0
        masks[0][16] = 0.0  # a pruned weight among the ties stays pruned
    elif case == "nan-pruned":
        masks[0][0] = 0.0
        scores[0][0] = math.nan
    elif case == "inf-active":
        scores[1][19] = math.inf
    else:
        masks[0][:] = 0.0  # 20 pruned, keep 20: the cut falls at the pruned weights
        masks[1][:5] = 0.0
    out = M.select_global(scores, masks, sparsity)
    assert calls == ([] if case.startswith("tie") else [1])
    assert torch.equal(torch.cat([o.flatten() for o in out]).bool(), reference(scores, masks, sparsity))


def test_the_bracket_holds_the_answer_for_real_sized_magnitudes(monkeypatch, chunk):
    """The sampled bracket must be wide enough that PMP-like inputs never fall back to a full kthvalue."""
    if chunk == 37:
        pytest.skip("about the bracket, not the pieces (7,000 pieces of 37 are only slow here)")
    full = []
    real = M._kthvalue

    def spy(t, k):
        if t.numel() > 100_000:
            full.append(t.numel())
        return real(t, k)

    monkeypatch.setattr(M, "_kthvalue", spy)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(266_200, generator=gen).abs()
    x[torch.rand(x.numel(), generator=gen) < 0.5] = -M.SENTINEL  # half already pruned, as in a PMP update
    for r in range(130_000, 266_200, 4_000):
        assert torch.equal(M._kth_smallest([x], r), torch.kthvalue(x, r).values)
    assert full == []
