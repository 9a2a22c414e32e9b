"""Scores and pruning rounds checked against independent computations, each test built to kill a
named mutant that the rest of the suite let live (``tools/mutants.py`` applies them):

* GraSP scored in eval mode: the suite's GraSP fixtures have no BatchNorm2d, so train and eval
  mode gave the same scores;
* SynFlow taking |.| of the prunable weights only, not of every parameter and buffer;
* SynFlow scoring once and pruning every round by the same stale scores;
* LTH pruning by the magnitudes of the rewound weights instead of the trained ones;
* SynFlow in train mode on a network whose only BatchNorm is BatchNorm2d (BatchNorm1d refuses a
  batch of one, so that mutant died elsewhere only by accident).

Every expected value comes from a computation written here (explicit formulas, functional
forwards, brute-force sorting), never from the function under test; each test also checks
that the mutant's behaviour would give a different answer, so the test cannot pass vacuously.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf

from repro.pruning import at_init
from repro.pruning import scores as scoring
from repro.pruning.iterative import LotteryTicket
from repro.pruning.masks import MaskSet
from repro.pruning.methods import Context

# ----------------------------------------------------------------------------- helpers


def perturb_bn(model: nn.Module, seed: int, *, positive: bool = False) -> None:
    """Running statistics far from (0, 1) and affine parameters far from (1, 0), so that batch
    statistics, running statistics and their absolute values all give visibly different outputs.
    ``positive``: nothing negative (then |.| of BN changes nothing, only the mode matters)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            sign = 1.0 if positive else -1.0
            with torch.no_grad():
                m.running_mean.copy_(sign * (torch.rand(m.running_mean.shape, generator=g) + 0.5))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 3 + 0.3)
                m.weight.copy_(sign * (torch.rand(m.weight.shape, generator=g) + 0.5))
                m.bias.copy_(sign * (torch.rand(m.bias.shape, generator=g) + 0.2))
            m.num_batches_tracked.fill_(5)


def brute_force_keep(scores: list[torch.Tensor], masks: list[torch.Tensor], num_pruned: int) -> list[torch.Tensor]:
    """The global selection rule by plain sorting: among the still-active weights keep the
    ``N - num_pruned`` highest scores, ties going to the earlier flat position."""
    flat = torch.cat([s.detach().flatten().double() for s in scores]).tolist()
    active = torch.cat([m.flatten() for m in masks]).tolist()
    keep = len(flat) - num_pruned
    candidates = sorted((i for i in range(len(flat)) if active[i] != 0), key=lambda i: (-flat[i], i))
    out = torch.zeros(len(flat))
    out[candidates[:keep]] = 1.0
    return [part.view_as(m) for part, m in zip(out.split([m.numel() for m in masks]), masks)]


def same_masks(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x.float(), y.float()) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- GraSP in train mode


def grasp_bn_net() -> nn.Sequential:
    """A small float64 conv net whose only normalisation is BatchNorm2d (tanh: smooth)."""
    torch.manual_seed(11)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.Tanh(),
                          nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.Tanh(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))
    perturb_bn(model, 12)
    return model.double()


def reference_grasp(model: nn.Module, names: list[str], halves, temperature: float, *, train: bool) -> list[torch.Tensor]:
    """w * Hg by torch.autograd.functional.hvp of L(w) = sum over halves of the mean tempered
    cross-entropy, with BatchNorm on batch statistics (``train``) or running ones."""
    ref = copy.deepcopy(model)
    ref.train(train)
    shapes = [ref.get_submodule(n).weight.shape for n in names]
    theta = torch.cat([ref.get_submodule(n).weight.detach().flatten() for n in names])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for n, s in zip(names, shapes):
            params[f"{n}.weight"] = flat[start : start + math.prod(s)].view(s)
            start += math.prod(s)
        return sum(F.cross_entropy(torch.func.functional_call(ref, params, (x,)) / temperature, y) for x, y in halves)

    flat = theta.clone().requires_grad_(True)
    g = torch.autograd.grad(loss(flat), flat)[0]
    _, hg = torch.autograd.functional.hvp(loss, theta.clone(), g)
    out, start = [], 0
    for s in shapes:
        k = math.prod(s)
        out.append((theta[start : start + k] * hg[start : start + k]).view(s))
        start += k
    return out


def test_grasp_scores_a_batchnorm2d_network_in_train_mode_with_batch_statistics():
    """GraSP (as the official code) scores with BatchNorm on batch statistics. The stream is
    exactly the class-balanced sample (3 classes x 2, already grouped by class), so the two
    halves are known: the first and the last three samples."""
    model = grasp_bn_net()
    masks = MaskSet(model)
    g = torch.Generator().manual_seed(13)
    x = torch.randn(6, 2, 5, 5, generator=g, dtype=torch.float64) * 1.5 + 0.7
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    halves = [(x[:3], y[:3]), (x[3:], y[3:])]
    T = 2.0  # a mild temperature: the Hessian term stays well above rounding
    want = reference_grasp(model, masks.names, halves, T, train=True)
    eval_mode = reference_grasp(model, masks.names, halves, T, train=False)
    # the mutant's answer (running statistics) is far from the right one, so the test can tell
    assert not torch.allclose(torch.cat([w.flatten() for w in want]), torch.cat([e.flatten() for e in eval_mode]),
                              rtol=0.1, atol=0.0)

    got = scoring.grasp(model, masks, [(x, y)], temperature=T, samples_per_class=2)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-12)


# ----------------------------------------------------------------------------- SynFlow: one round


def synflow_bn_net(*, biases: bool, seed: int) -> nn.Sequential:
    """Conv - BN2d - ReLU - Conv - BN2d - ReLU - Linear - ReLU - Linear on 2x4x4 inputs."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=biases), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Conv2d(3, 4, 3, padding=1, bias=biases), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(64, 5, bias=biases), nn.ReLU(), nn.Linear(5, 3, bias=biases))


def reference_synflow(model: nn.Sequential, masks: MaskSet, input_shape: tuple[int, ...], *,
                      linearise: str = "all", batch_stats: bool = False) -> list[torch.Tensor]:
    """|dR/dw * w| by an explicit forward written out layer by layer in float64.

    ``linearise="all"``: every parameter and buffer replaced by its absolute value (the paper);
    ``"weights"``: only the prunable weights (the mutant). BatchNorm2d is written out as
    gamma (z - mu) / sqrt(var + eps) + beta with the running statistics, or with the batch
    statistics of the single all-ones input (``batch_stats``, the train-mode mutant).
    """
    state = {k: v.detach().double().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    prunable = {f"{n}.weight" for n in masks.names}
    for k in state:
        if linearise == "all" or k in prunable:
            state[k] = state[k].abs()
    leaves = {n: (state[f"{n}.weight"] * m.double()).requires_grad_(True) for n, m in zip(masks.names, masks.masks)}
    h = torch.ones((1, *input_shape), dtype=torch.float64)
    for idx, module in enumerate(model):
        name = str(idx)
        bias = state.get(f"{name}.bias")
        if isinstance(module, nn.Conv2d):
            h = F.conv2d(h, leaves[name], bias, padding=module.padding)
        elif isinstance(module, nn.Linear):
            h = h @ leaves[name].T + (bias if bias is not None else 0.0)
        elif isinstance(module, nn.BatchNorm2d):
            if batch_stats:
                mu, var = h.mean(dim=(0, 2, 3)), h.var(dim=(0, 2, 3), unbiased=False)
            else:
                mu, var = state[f"{name}.running_mean"], state[f"{name}.running_var"]
            shape = (1, -1, 1, 1)
            h = (h - mu.view(shape)) / torch.sqrt(var.view(shape) + module.eps) * state[f"{name}.weight"].view(shape) \
                + state[f"{name}.bias"].view(shape)
        elif isinstance(module, nn.ReLU):
            h = h.clamp_min(0.0)
        elif isinstance(module, nn.Flatten):
            h = h.flatten(1)
        else:
            raise TypeError(f"no reference for {type(module).__name__}")
    grads = torch.autograd.grad(h.sum(), list(leaves.values()))
    return [(g * w).detach().abs() for g, w in zip(grads, leaves.values())]


def test_synflow_linearises_every_parameter_and_buffer_not_only_the_prunable_weights():
    """Negative biases, BN affine parameters and running means: taking |.| of the prunable
    weights alone leaves them negative, and the synaptic flow (hence every score) changes."""
    model = synflow_bn_net(biases=True, seed=21)
    perturb_bn(model, 22)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.copy_(-(m.bias.abs() + 0.3))
    masks = MaskSet(model)
    masks.prune_to(scoring.random(masks.weights, 5), 0.3)  # the masked network is what is scored
    want = reference_synflow(model, masks, (2, 4, 4))
    weights_only = reference_synflow(model, masks, (2, 4, 4), linearise="weights")
    assert any(not torch.allclose(a, b, rtol=1e-3) for a, b in zip(want, weights_only))

    got = scoring.synflow(model, masks, (2, 4, 4))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_synflow_scores_a_batchnorm2d_only_network_in_eval_mode_with_running_statistics():
    """The official code scores in eval mode: BN2d applies its (absolute) running statistics.
    Everything here is non-negative, so only the mode separates the right answer from the
    mutant's: in train mode BN2d normalises by the statistics of the one all-ones input (a
    batch of one that BatchNorm2d, unlike BatchNorm1d, accepts without complaint)."""
    model = synflow_bn_net(biases=False, seed=31)
    perturb_bn(model, 32, positive=True)
    model.train()  # the caller's mode must not matter
    masks = MaskSet(model)
    want = reference_synflow(model, masks, (2, 4, 4))
    train_mode = reference_synflow(model, masks, (2, 4, 4), batch_stats=True)
    assert any(not torch.allclose(a, b, rtol=1e-3) for a, b in zip(want, train_mode))

    got = scoring.synflow(model, masks, (2, 4, 4))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert model.training


# ----------------------------------------------------------------------------- SynFlow: every round


def closed_form_scores(ws: list[torch.Tensor]) -> list[torch.Tensor]:
    """SynFlow scores of a bias-free ReLU MLP with weights ``ws`` (masked): with A_l = |W_l| all
    activations are non-negative, the ReLUs are the identity, and
    score_l[i, j] = (1^T A_L ... A_{l+1})_i A_l[i, j] (A_{l-1} ... A_1 1)_j."""
    a = [w.double().abs() for w in ws]
    out = []
    for layer in range(len(a)):
        right = torch.ones(a[0].shape[1], dtype=torch.float64)
        for m in a[:layer]:
            right = m @ right
        left = torch.ones(a[-1].shape[0], dtype=torch.float64)
        for m in reversed(a[layer + 1 :]):
            left = left @ m
        out.append(left[:, None] * a[layer] * right[None, :])
    return out


def reference_iterative_synflow(ws: list[torch.Tensor], sparsity: float, rounds: int, *,
                                rescore: bool = True) -> list[torch.Tensor]:
    """Tanaka et al.'s loop written out: in round k = 1..rounds score the masked network (closed
    form) and prune to 1 - (1 - s)^(k / rounds) of the N weights, floor(s_k N + 0.5) of them.
    ``rescore=False`` is the mutant: the round-1 scores are reused every round."""
    masks = [torch.ones_like(w) for w in ws]
    n = sum(w.numel() for w in ws)
    first = None
    for k in range(1, rounds + 1):
        s_k = 1.0 - (1.0 - sparsity) ** (k / rounds)
        scores = closed_form_scores([w * m for w, m in zip(ws, masks)]) if rescore or first is None else first
        first = scores if first is None else first
        # Conserved flow makes mathematically equal scores common (a unit with one input and
        # one output passes its flow on whole), equal only up to float64 rounding: rank, as the
        # selection rule is pinned, in float32 relative to the top score, ties to the earlier index.
        top = max(float(s.max()) for s in scores)
        ranked = [(s / top).float() for s in scores]
        masks = brute_force_keep(ranked, masks, math.floor(s_k * n + 0.5))
    return masks


def test_synflow_rescores_the_masked_network_every_round():
    """At 90% over 8 rounds, re-scoring after each pruning round (so that a thinned layer's
    survivors gain score) gives a different mask than ranking once by the initial scores."""
    torch.manual_seed(41)
    model = nn.Sequential(nn.Linear(8, 7, bias=False), nn.ReLU(), nn.Linear(7, 6, bias=False), nn.ReLU(),
                          nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False))
    masks = MaskSet(model)
    ws = [w.detach().clone() for w in masks.weights]
    sparsity, rounds = 0.9, 8
    want = reference_iterative_synflow(ws, sparsity, rounds)
    assert not same_masks(want, reference_iterative_synflow(ws, sparsity, rounds, rescore=False))
    assert sum(int((m == 0).sum()) for m in want) == math.floor(0.9 * 143 + 0.5) == 129  # N = 56 + 42 + 30 + 15

    at_init.synflow_prune(model, masks, sparsity, (8,), rounds=rounds)
    assert same_masks(masks.masks, want)


# ----------------------------------------------------------------------------- LTH prunes by trained magnitudes


def test_lth_prunes_by_the_trained_weights_then_rewinds_them():
    """After a cycle LTH removes the smallest |w| of the TRAINED weights (those are what the
    cycle learned), and only then restores the initial values under the new mask."""
    torch.manual_seed(51)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))  # 30 + 15 = 45 prunable weights
    masks = MaskSet(model)
    cfg = OmegaConf.create({"name": "lth", "scope": "global", "targets": [0.5], "rate": 0.2, "layer_rates": {},
                            "rewind_step": 0})
    method = LotteryTicket(cfg, 0.5, None)
    ctx = Context(model=model, masks=masks, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), steps_per_epoch=1,
                  epochs=1, seed=0, device=torch.device("cpu"))
    method.before_training(ctx)  # snapshots the initialisation (rewind_step=0)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(52)

    for cycle, zeros in [(0, 9), (1, 16)]:  # 0.2 * 45 = 9; 1 - 0.8^2 = 0.36, 0.36 * 45 + 0.5 = 16.7 -> 16
        before = [m.clone() for m in masks.masks]
        with torch.no_grad():  # "training": new values, masked weights held at zero as the loop does
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
            masks.apply()
        trained = [w.detach().clone() for w in masks.weights]
        want = brute_force_keep([w.abs() for w in trained], before, zeros)
        by_rewound = brute_force_keep([initial[f"{n}.weight"].abs() for n in masks.names], before, zeros)
        assert not same_masks(want, by_rewound)  # the mutant's mask would differ

        assert method.after_cycle(ctx, cycle)
        assert same_masks(masks.masks, want)
        for name, layer_mask in zip(masks.names, masks.masks):  # rewound: initial values under the new mask
            assert torch.equal(model.get_submodule(name).weight, initial[f"{name}.weight"] * layer_mask)
            assert torch.equal(model.get_submodule(name).bias, initial[f"{name}.bias"])
