"""Prune-at-initialization baselines: each score checked against an independent computation
(explicit mask gradients, finite differences, brute force, closed form), and every method
against the count rule and for leaving the model untouched apart from its masks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf

from repro.config import GraspConfig, PrunerConfig, RandomConfig, SnipConfig, SynflowConfig
from repro.pruning import at_init, methods
from repro.pruning import scores as scoring
from repro.pruning.masks import MaskSet, check_integrity, pruned_count
from repro.pruning.methods import Context

CONF = Path(__file__).resolve().parent.parent / "conf" / "pruner"
AT_INIT = ["snip", "grasp", "synflow", "random", "magnitude_init"]


def mlp(act: type[nn.Module] = nn.ReLU, bias: bool = True, sizes=(6, 5, 4, 3)) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def bn_convnet(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Linear(16, num_classes))


def perturb_bn(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so a change would show."""
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.num_batches_tracked.fill_(3)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def image_batches(n: int = 120, batch_size: int = 20, seed: int = 0, num_classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    y[:num_classes] = torch.arange(num_classes)  # every class present
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]


def partly_pruned(model: nn.Module, sparsity: float = 0.3) -> MaskSet:
    masks = MaskSet(model)
    masks.prune_to(scoring.random(masks.weights, 123), sparsity)
    return masks


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(before: dict, model: nn.Module) -> None:
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{k} changed"


# ----------------------------------------------------------------------------- SNIP


def explicit_mask_snip(model: nn.Module, masks: MaskSet, batches) -> list[torch.Tensor]:
    """|dL/dm| with the masks as explicit leaf tensors in a functional forward (eval mode)."""
    model.eval()
    m = [mask.detach().clone().requires_grad_(True) for mask in masks.masks]
    params = {f"{name}.weight": layer.weight.detach() * mi for name, layer, mi in zip(masks.names, masks.layers, m)}
    loss = sum(F.cross_entropy(torch.func.functional_call(model, params, (x,)), y) for x, y in batches)
    return [g.abs() for g in torch.autograd.grad(loss, m)]


@pytest.mark.parametrize("net", ["mlp", "bn_convnet"])
def test_snip_scores_are_the_mask_gradient(net):
    torch.manual_seed(0)
    model = mlp() if net == "mlp" else bn_convnet()
    if net == "mlp":
        g = torch.Generator().manual_seed(1)
        batches = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    else:
        perturb_bn(model)
        batches = image_batches(60, 20)
    model.train()
    masks = partly_pruned(model)
    got = scoring.snip(model, masks, batches, num_batches=2)
    want = explicit_mask_snip(model, masks, batches[:2])
    for a, b, mask in zip(got, want, masks.masks):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
        assert bool((a[mask == 0] == 0).all())  # pruned weights carry no sensitivity


def test_snip_never_revives_a_pruned_weight():
    torch.manual_seed(0)
    model = mlp()
    masks = partly_pruned(model, 0.5)
    before = [m.clone() for m in masks.masks]
    batches = [(torch.randn(8, 6), torch.randint(0, 3, (8,)))]
    masks.prune_to(scoring.snip(model, masks, batches), 0.7)
    for old, new in zip(before, masks.masks):
        assert bool((new <= old).all())


# ----------------------------------------------------------------------------- GraSP


def grasp_fixture():
    """A tanh MLP (smooth, so finite differences are clean), float64, and 12 samples that are
    exactly the class-balanced sample (3 classes x 4): grasp uses all of them."""
    torch.manual_seed(3)
    model = mlp(nn.Tanh, sizes=(5, 4, 4, 3)).double()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(12, 5, generator=g, dtype=torch.float64) * 2
    y = torch.arange(12) % 3
    return model, MaskSet(model), [(x[:7], y[:7]), (x[7:], y[7:])], x, y


def total_loss_grad(model: nn.Module, names: list[str], flat: torch.Tensor, x, y, T: float, create_graph=False):
    """d/dw of GraSP's loss (the sum of two equal half-batch means = 2 x the full mean) at
    prunable weights ``flat`` (other parameters fixed), as one flat vector."""
    shapes = [model.get_submodule(n).weight.shape for n in names]
    parts, start = {}, 0
    for n, s in zip(names, shapes):
        k = math.prod(s)
        parts[f"{n}.weight"] = flat[start : start + k].view(s)
        start += k
    loss = 2 * F.cross_entropy(torch.func.functional_call(model, parts, (x,)) / T, y)
    return torch.autograd.grad(loss, flat, create_graph=create_graph)[0]


def test_grasp_hessian_gradient_matches_finite_differences():
    model, masks, batches, x, y = grasp_fixture()
    T = 200.0
    _, hg = scoring.grasp_hessian_gradient(model, masks, batches, temperature=T, samples_per_class=4)
    theta = torch.cat([w.detach().flatten() for w in masks.weights]).requires_grad_(True)
    g = total_loss_grad(model, masks.names, theta, x, y, T).detach()
    eps = 1e-5 / float(g.norm())  # the error fell as eps^2 down to here (1e-6 relative at 1e-3)
    plus = total_loss_grad(model, masks.names, (theta + eps * g).detach().requires_grad_(True), x, y, T)
    minus = total_loss_grad(model, masks.names, (theta - eps * g).detach().requires_grad_(True), x, y, T)
    fd = (plus - minus) / (2 * eps)
    torch.testing.assert_close(torch.cat([h.flatten() for h in hg]), fd, rtol=1e-6, atol=1e-8 * float(fd.abs().max()))


def test_grasp_removes_the_weights_whose_removal_least_reduces_the_gradient_norm():
    model, masks, batches, x, y = grasp_fixture()
    T = 200.0
    theta = torch.cat([w.detach().flatten() for w in masks.weights])

    def grad_norm_sq(flat: torch.Tensor) -> float:
        return float(total_loss_grad(model, masks.names, flat.clone().requires_grad_(True), x, y, T).pow(2).sum())

    # Brute force: the first-order change of ||g||^2 when weight q is zeroed, i.e. the
    # derivative of ||g(theta - t theta_q e_q)||^2 at t = 0, by central differences.
    delta = torch.empty_like(theta)
    h = 1e-4
    for q in range(theta.numel()):
        step = torch.zeros_like(theta)
        step[q] = theta[q]
        delta[q] = (grad_norm_sq(theta - h * step) - grad_norm_sq(theta + h * step)) / (2 * h)
    sparsity = 0.4
    k = pruned_count(sparsity, theta.numel())
    order = torch.sort(delta, descending=True).indices
    assert float(delta[order[k - 1]] - delta[order[k]]) > 1e-6 * float(delta.abs().max())  # no near-tie at the cut
    want_removed = set(order[:k].tolist())

    masks.prune_to(scoring.grasp(model, masks, batches, temperature=T, samples_per_class=4), sparsity)
    removed = set(torch.nonzero(torch.cat([m.flatten() for m in masks.masks]) == 0).view(-1).tolist())
    assert removed == want_removed


def test_grasp_balanced_sample_takes_the_first_of_each_class_grouped_by_class():
    y = torch.tensor([2, 0, 2, 1, 0, 2, 1, 1, 0, 2])
    x = torch.arange(10).float().view(10, 1)
    stream = iter([(x[:4], y[:4]), (x[4:], y[4:])])
    xs, ys = scoring.balanced_sample(stream, 3, 2)
    assert ys.tolist() == [0, 0, 1, 1, 2, 2]
    assert xs.view(-1).tolist() == [1, 4, 3, 6, 0, 2]
    with pytest.raises(ValueError, match="ran out"):
        scoring.balanced_sample(iter([(x, y)]), 3, 4)


# ----------------------------------------------------------------------------- SynFlow


def closed_form_synflow(ws: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """For a bias-free linear/ReLU chain with A_l = |W_l|: R = 1^T A_L ... A_1 1 and
    score_l[i, j] = (1^T A_L ... A_{l+1})_i A_l[i, j] (A_{l-1} ... A_1 1)_j."""
    a = [w.abs() for w in ws]
    out = []
    for layer in range(len(a)):
        right = torch.ones(a[0].shape[1], dtype=a[0].dtype)
        for m in a[:layer]:
            right = m @ right
        left = torch.ones(a[-1].shape[0], dtype=a[0].dtype)
        for m in reversed(a[layer + 1 :]):
            left = left @ m
        out.append(left[:, None] * a[layer] * right[None, :])
    r = torch.ones(a[-1].shape[0], dtype=a[0].dtype)
    for m in reversed(a):
        r = r @ m
    return out, r.sum()


@pytest.mark.parametrize("pruned", [0.0, 0.4])
def test_synflow_matches_the_closed_form_and_conserves_flow_per_layer(pruned):
    torch.manual_seed(5)
    model = mlp(nn.ReLU, bias=False, sizes=(7, 6, 5, 4, 3))
    masks = partly_pruned(model, pruned) if pruned else MaskSet(model)
    masked = [(w * m).detach().double() for w, m in zip(masks.weights, masks.masks)]
    before = snapshot(model)
    got = scoring.synflow(model, masks, (7,))
    assert_same_state(before, model)
    want, r = closed_form_synflow(masked)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0.0)
    sums = torch.stack([s.sum() for s in got])
    torch.testing.assert_close(sums, r.expand_as(sums), rtol=1e-12, atol=0.0)


def test_synflow_rounds_follow_the_exponential_schedule_and_end_exactly():
    assert at_init.synflow_sparsity(0.95, 100, 100) == 0.95
    assert at_init.synflow_sparsity(0.99, 1, 2) == pytest.approx(0.9)
    torch.manual_seed(6)
    model = mlp(nn.ReLU, bias=False, sizes=(7, 6, 5, 4, 3))
    masks = MaskSet(model)
    seen = []
    prune_to = masks.prune_to
    masks.prune_to = lambda s, sp, scope="global": (seen.append(sp), prune_to(s, sp, scope=scope))
    at_init.synflow_prune(model, masks, 0.9, (7,), rounds=4)
    assert seen == pytest.approx([1 - 0.1 ** (k / 4) for k in range(1, 5)])
    assert masks.num_zeros() == pruned_count(0.9, masks.num_prunable)


# ----------------------------------------------------------------------------- random


def test_random_scores_are_seeded_and_scopes_differ():
    torch.manual_seed(0)
    ws = [torch.randn(30, 20), torch.randn(10, 30)]
    a, b, c = scoring.random(ws, 0), scoring.random(ws, 0), scoring.random(ws, 1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    # hashed seed: not the stream that torch.manual_seed(seed) gave the initial weights
    torch.manual_seed(0)
    assert not torch.equal(a[0], torch.rand(30, 20))


@pytest.mark.parametrize("scope", ["global", "layerwise"])
def test_random_scope_decides_where_the_zeros_go(scope):
    """bn_convnet's prunable layers hold 36, 216, 384 and 160 weights (796). At 90%, layerwise
    prunes round(0.9 n) of each: 32, 194, 346, 144; global prunes round(0.9 * 796) = 716 of
    the lowest scores wherever they are. Both checked against a top-k of the same scores."""
    torch.manual_seed(0)
    model = bn_convnet()
    masks = MaskSet(model)
    assert [m.numel() for m in masks.masks] == [36, 216, 384, 160]
    make_method("random", scope=scope).before_training(make_ctx(model, masks))
    zeros = [int((m == 0).sum()) for m in masks.masks]
    scores = scoring.random([w.detach() for w in masks.weights], 0)
    if scope == "layerwise":
        assert zeros == [32, 194, 346, 144]
        for s, m in zip(scores, masks.masks):
            kept = torch.zeros(s.numel(), dtype=torch.bool)
            kept[s.flatten().topk(s.numel() - int((m == 0).sum())).indices] = True
            assert torch.equal(m.flatten().bool(), kept)
    else:
        assert sum(zeros) == 716 and zeros != [32, 194, 346, 144]
        flat = torch.cat([s.flatten() for s in scores])
        kept = torch.zeros(796, dtype=torch.bool)
        kept[flat.topk(796 - 716).indices] = True
        assert torch.equal(torch.cat([m.flatten() for m in masks.masks]).bool(), kept)


# ----------------------------------------------------------------------------- every method


def make_method(name: str, **overrides):
    schema = {"snip": SnipConfig, "grasp": GraspConfig, "synflow": SynflowConfig, "random": RandomConfig}.get(name)
    node = schema(**overrides) if schema else PrunerConfig(name=name, **overrides)
    return methods.build(OmegaConf.structured(node), 0.9, None)


def make_ctx(model: nn.Module, masks: MaskSet, dataset: str = "mnist", seen: list | None = None) -> Context:
    data = image_batches(200, 25)

    def scoring_batches(batch_size: int):
        if seen is not None:
            seen.append(batch_size)
        xs = torch.cat([x for x, _ in data])
        ys = torch.cat([y for _, y in data])
        return iter([(xs[i : i + batch_size], ys[i : i + batch_size]) for i in range(0, len(ys), batch_size)])

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return Context(model=model, masks=masks, optimizer=opt, steps_per_epoch=1, epochs=1, seed=0,
                   device=torch.device("cpu"), scoring_batches=scoring_batches, dataset=dataset)


METHOD_CASES = [("snip", {}), ("grasp", {"samples_per_class": 3}), ("synflow", {"rounds": 5}), ("random", {}),
                ("random", {"scope": "layerwise"}), ("magnitude_init", {}), ("snip", {"scope": "layerwise"})]


@pytest.mark.parametrize(("name", "overrides"), METHOD_CASES)
def test_every_method_hits_the_exact_count_and_changes_nothing_but_the_masks(name, overrides):
    torch.manual_seed(0)
    model = bn_convnet()
    perturb_bn(model)
    model.train()
    masks = MaskSet(model)
    before = snapshot(model)
    method = make_method(name, **overrides)
    assert (method.uses_masks, method.uses_sparsity, method.uses_schedule) == (True, True, False)
    # momentum state that the mask change must clean
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    ctx = make_ctx(model, masks)
    ctx.optimizer.step()
    with torch.no_grad():  # undo the step: only the momentum buffers should remain
        for k, v in model.state_dict().items():
            v.copy_(before[k])
    model.zero_grad(set_to_none=True)

    method.before_training(ctx)

    scope = overrides.get("scope", "global")
    check_integrity(masks, 0.9, scope)
    # bn_convnet: 796 prunable weights; global round(0.9 * 796) = 716, layerwise 32 + 194 + 346 + 144 = 716
    assert masks.num_zeros() == 716
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    prunable = {f"{n}.weight": m for n, m in zip(masks.names, masks.masks)}
    for k, v in before.items():
        if k.endswith("weight_mask"):
            continue
        want = v * prunable[k] if k in prunable else v
        assert torch.equal(after[k], want), f"{k} changed beyond the mask"
    for w, m in zip(masks.weights, masks.masks):
        buf = ctx.optimizer.state[w]["momentum_buffer"]
        assert bool((buf[m == 0] == 0).all())


@pytest.mark.parametrize("score", ["snip", "grasp", "synflow"])
def test_score_functions_leave_the_whole_state_untouched(score):
    torch.manual_seed(0)
    model = bn_convnet()
    perturb_bn(model)
    masks = partly_pruned(model)
    model.train()
    before = snapshot(model)
    batches = image_batches(200, 25)
    if score == "snip":
        out = scoring.snip(model, masks, batches, num_batches=2)
    elif score == "grasp":
        out = scoring.grasp(model, masks, batches, samples_per_class=3)
    else:
        out = scoring.synflow(model, masks, (1, 8, 8))
    assert [o.shape for o in out] == [w.shape for w in masks.weights]
    assert all(bool(torch.isfinite(o).all()) for o in out)
    assert_same_state(before, model)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("dataset", "want"), [("mnist", 100), ("fashion_mnist", 100), ("cifar10", 128)])
def test_snip_scoring_batch_size_defaults_by_dataset(dataset, want):
    torch.manual_seed(0)
    model = bn_convnet()
    masks = MaskSet(model)
    seen: list[int] = []
    make_method("snip").before_training(make_ctx(model, masks, dataset, seen))
    assert seen == [want]
    seen.clear()
    make_method("snip", batch_size=40).before_training(make_ctx(model, MaskSet(bn_convnet()), dataset, seen))
    assert seen == [40]


def test_methods_are_registered_and_yaml_names_match():
    for name in AT_INIT:
        assert name in methods.REGISTRY
        cfg = OmegaConf.load(CONF / f"{name}.yaml")
        assert cfg.name == name
        assert cfg.defaults == [f"/schema/pruner/{name if name != 'magnitude_init' else 'base'}@_here_"]


def test_bad_knobs_fail_with_one_line_errors():
    with pytest.raises(ValueError, match="num_batches"):
        make_method("snip", num_batches=0)
    with pytest.raises(ValueError, match="temperature"):
        make_method("grasp", temperature=0.0)
    with pytest.raises(ValueError, match="rounds"):
        make_method("synflow", rounds=0)
