"""MaskedSGD is torch's SGD (up to rounding), and its masked update keeps pruned weights at exactly zero."""

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from repro.optim import MaskedSGD, load_state, make_optimizer, masks_its_update
from repro.pruning import scores
from repro.pruning.masks import MaskSet, check_integrity

CONFIGS = [
    {"momentum": 0.9, "weight_decay": 5e-4},
    {"momentum": 0.9, "weight_decay": 5e-4, "nesterov": True},
    {"momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3},
    {"momentum": 0.0, "weight_decay": 5e-4},
    {"momentum": 0.5},
]


def net(batch_norm: bool = True) -> nn.Module:
    torch.manual_seed(0)
    norm = [nn.BatchNorm2d(8)] if batch_norm else []
    return nn.Sequential(nn.Conv2d(3, 8, 3), *norm, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 17), nn.ReLU(),
                         nn.Linear(17, 10))


def batches(steps: int):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(steps)]


def train(model, opt, data, before_step=lambda step: None, after_step=lambda step: None):
    for step, (x, y) in enumerate(data):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        before_step(step)
        opt.step()
        after_step(step)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("hyper", CONFIGS)
def test_unmasked_it_follows_torch_sgd(hyper, foreach):
    a, b = net(), net()
    data = batches(25)
    train(a, torch.optim.SGD(a.parameters(), lr=0.05, **hyper), data)
    opt = MaskedSGD(b.parameters(), lr=0.05, foreach=foreach, **hyper)
    train(b, opt, data)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    if hyper.get("momentum"):
        assert all("momentum_buffer" in opt.state[p] for p in b.parameters())


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("hyper", CONFIGS[:3])
def test_masked_update_keeps_zeros_and_moves_kept_weights_as_masked_gradients_do(hyper, foreach):
    """Reference: torch's SGD with masked gradients. Pruning happens mid-training with momentum built up.
    No BatchNorm here: behind a conv channel pruned to a few weights it divides by a tiny std,
    which blows rounding differences up to 1e-4 within 20 steps."""
    ref, ours = net(batch_norm=False), net(batch_norm=False)
    ref_masks, our_masks = MaskSet(ref), MaskSet(ours)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, **hyper)
    our_opt = MaskedSGD(ours.parameters(), lr=0.05, foreach=foreach, masks=dict(zip(our_masks.weights, our_masks.masks)),
                        **hyper)
    assert masks_its_update(our_opt)
    prune_at = {0: 0.3, 8: 0.5, 16: 0.7}

    def prune(masks, opt):
        def hook(step):
            if step in prune_at:
                masks.prune_to(scores.magnitude(masks.weights), prune_at[step])
                masks.clean_optimizer_state(opt)
        return hook

    def check(step):
        for w, m in zip(our_masks.weights, our_masks.masks):
            assert bool((w[m == 0] == 0).all()), f"a masked weight moved at step {step}"

    data = batches(24)
    train(ref, ref_opt, data, before_step=lambda s: (prune(ref_masks, ref_opt)(s), ref_masks.mask_grads()))
    train(ours, our_opt, data, before_step=prune(our_masks, our_opt), after_step=check)
    assert [torch.equal(a, b) for a, b in zip(ref_masks.masks, our_masks.masks)] == [True] * len(our_masks.masks)
    for (name, pa), pb in zip(ref.named_parameters(), ours.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    check_integrity(our_masks, 0.7, "global")


def test_a_mask_changed_in_place_takes_effect_at_the_next_step():
    model = nn.Linear(4, 3)
    mask = torch.ones_like(model.weight)
    opt = MaskedSGD(model.parameters(), lr=0.1, momentum=0.9, masks={model.weight: mask})
    x = torch.randn(8, 4)
    for step in range(3):
        if step == 1:
            with torch.no_grad():
                mask[0] = 0.0
                model.weight.mul_(mask)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    assert bool((model.weight[0] == 0).all()) and bool((model.weight[1:] != 0).all())


def test_make_optimizer_and_what_the_loop_must_mask():
    model = nn.Linear(4, 3)
    sgd = OmegaConf.create({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0})
    opt = make_optimizer(model.parameters(), sgd, {model.weight: torch.ones_like(model.weight)})
    assert isinstance(opt, MaskedSGD) and masks_its_update(opt)
    assert not masks_its_update(make_optimizer(model.parameters(), sgd))  # dense: nothing to mask
    adam = make_optimizer(model.parameters(), OmegaConf.merge(sgd, {"name": "adam"}))
    assert type(adam) is torch.optim.Adam and not masks_its_update(adam)
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        make_optimizer(model.parameters(), OmegaConf.merge(sgd, {"name": "lion"}))


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_on_cpu_is_fused_matches_the_per_tensor_adam_and_keeps_pruned_weights_at_zero(name):
    """The fused CPU kernel (chosen for speed: MKL's square root is slow on the zero second moments
    of masked positions) against torch's per-tensor Adam, stepped on the same masked gradients."""
    torch.manual_seed(0)
    ours, ref = nn.Linear(30, 20), nn.Linear(30, 20)
    ref.load_state_dict(ours.state_dict())
    mask = (torch.rand(20, 30) > 0.7).float()
    cfg = OmegaConf.create({"name": name, "lr": 1e-2, "momentum": 0.0, "nesterov": False, "weight_decay": 1e-3})
    opt = make_optimizer(ours.parameters(), cfg)
    assert opt.param_groups[0]["fused"] is True
    ref_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    ref_opt = ref_cls(ref.parameters(), lr=1e-2, weight_decay=1e-3, fused=False, foreach=False)
    with torch.no_grad():
        ours.weight.mul_(mask)
        ref.weight.mul_(mask)
    x = torch.randn(64, 30)
    for _ in range(25):
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            model(x).pow(2).mean().backward()
            model.weight.grad.mul_(mask)  # what the loop does for torch's optimizers
            o.step()
    assert torch.allclose(ours.weight, ref.weight, rtol=1e-5, atol=1e-6)
    assert torch.allclose(ours.bias, ref.bias, rtol=1e-5, atol=1e-6)
    assert bool((ours.weight[mask == 0] == 0).all()) and bool((ours.weight[mask == 1] != 0).all())


def test_resumed_adam_keeps_its_fused_kernel_whatever_the_checkpoint_says():
    """torch's load_state_dict copies every param-group key: a checkpoint written by the per-tensor
    path (fused=None) would switch a resumed run's kernel; load_state keeps the running one and
    takes the state (moments, step) from the checkpoint."""
    torch.manual_seed(0)
    model = nn.Linear(5, 4)
    old = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(8, 5)).sum().backward()
    old.step()
    saved = old.state_dict()
    assert saved["param_groups"][0]["fused"] is None
    cfg = OmegaConf.create({"name": "adam", "lr": 1e-3, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0})
    opt = make_optimizer(model.parameters(), cfg)
    load_state(opt, saved)
    assert opt.param_groups[0]["fused"] is True
    assert torch.equal(opt.state[model.weight]["exp_avg"], old.state[model.weight]["exp_avg"])
    assert float(opt.state[model.weight]["step"]) == 1.0


def test_unsupported_torch_options_fail_loudly():
    model = nn.Linear(4, 3)
    opt = MaskedSGD(model.parameters(), lr=0.1)
    opt.param_groups[0]["maximize"] = True
    model(torch.randn(2, 4)).sum().backward()
    with pytest.raises(NotImplementedError, match="maximize"):
        opt.step()


@pytest.mark.parametrize("foreach", [False, True])
def test_an_all_ones_mask_retraces_the_unmasked_run_bit_for_bit(foreach):
    """LTH's first cycle is dense training under all-ones masks: it must equal the dense run exactly."""
    a, b = net(), net()
    data = batches(10)
    train(a, MaskedSGD(a.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, foreach=foreach), data)
    masks = MaskSet(b)
    train(b, MaskedSGD(b.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, foreach=foreach,
                       masks=dict(zip(masks.weights, masks.masks))), data)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(pa, pb), name
