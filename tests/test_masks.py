"""The mask invariants: exact counts, deterministic ties, zeros that stay zero, no revival."""

import math

import pytest
import torch
import torch.nn as nn

from repro.pruning import scores
from repro.pruning.masks import MaskSet, check_integrity, pruned_count, select_global


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 17),
                         nn.ReLU(), nn.Linear(17, 10))


def test_count_rule_is_round_half_up():
    assert pruned_count(0.9, 266_200) == 239_580
    assert pruned_count(0.5, 3) == 2  # 1.5 rounds up
    assert pruned_count(0.25, 2) == 1  # 0.5 rounds up
    assert pruned_count(0.0, 10) == 0
    assert pruned_count(0.999999, 10) == 10


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.729, 0.9, 0.97, 0.9797])
def test_global_selection_prunes_exactly_the_pinned_count(sparsity):
    masks = MaskSet(small_net())
    masks.prune_to(scores.magnitude(masks.weights), sparsity)
    assert masks.num_zeros() == math.floor(sparsity * masks.num_prunable + 0.5)
    check_integrity(masks, sparsity, "global")


@pytest.mark.parametrize("sparsity", [0.3, 0.8, 0.95])
def test_layerwise_selection_prunes_the_pinned_count_per_tensor(sparsity):
    masks = MaskSet(small_net())
    masks.prune_to(scores.magnitude(masks.weights), sparsity, scope="layerwise")
    for m in masks.masks:
        assert int((m == 0).sum()) == pruned_count(sparsity, m.numel())
    check_integrity(masks, sparsity, "layerwise")


def test_ties_are_broken_by_position_in_both_scopes():
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    masks = MaskSet(net)
    tied = [torch.ones(3, 4), torch.ones(2, 3)]  # 18 equal scores
    masks.prune_to(tied, 0.5)
    flat = torch.cat([m.flatten() for m in masks.masks])
    assert flat.tolist() == [1.0] * 9 + [0.0] * 9  # the earlier positions are kept
    masks2 = MaskSet(nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False)))
    masks2.prune_to(tied, 0.5, scope="layerwise")
    assert masks2.masks[0].flatten().tolist() == [1.0] * 6 + [0.0] * 6
    assert masks2.masks[1].flatten().tolist() == [1.0] * 3 + [0.0] * 3


def test_selection_matches_a_brute_force_sort():
    torch.manual_seed(1)
    s = [torch.randn(50, 20), torch.randn(300), torch.randn(7, 3, 3, 3)]
    m = [torch.ones_like(x) for x in s]
    m[0][:10] = 0  # already pruned: must stay pruned whatever the score
    s[0][:10] = 100.0
    out = select_global(s, m, 0.6)
    flat = torch.cat([x.flatten() for x in s])
    active = torch.cat([x.flatten() for x in m]).bool()
    keep = flat.numel() - pruned_count(0.6, flat.numel())
    order = sorted(range(flat.numel()), key=lambda i: (-(flat[i].item() if active[i] else -math.inf), i))
    expected = torch.zeros(flat.numel())
    expected[order[:keep]] = 1
    assert torch.equal(torch.cat([x.flatten() for x in out]), expected)


def test_masks_never_revive_and_only_lose_ones():
    masks = MaskSet(small_net())
    previous = None
    for s in (0.2, 0.5, 0.7, 0.9):
        # adversarial scores: pruned weights would win if they were eligible
        adversarial = [torch.where(m == 0, torch.full_like(m, 1e9), torch.rand_like(m)) for m in masks.masks]
        masks.prune_to(adversarial, s)
        current = torch.cat([m.flatten() for m in masks.masks])
        if previous is not None:
            assert bool((current <= previous).all())
        previous = current
        assert masks.num_zeros() == pruned_count(s, masks.num_prunable)


def test_exclude_first_and_last_layers():
    net = small_net()
    masks = MaskSet(net, exclude_first=True, exclude_last=True)
    assert masks.names == ["4"]
    assert not hasattr(net[0], "weight_mask")


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
        lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-4),
        lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2),
    ],
)
def test_masked_weights_stay_exactly_zero_through_training(make_opt):
    net = small_net()
    masks = MaskSet(net)
    opt = make_opt(net.parameters())
    x, y = torch.randn(32, 3, 8, 8), torch.randint(0, 10, (32,))
    for step in range(60):
        if step in (0, 20, 40):  # prune progressively mid-training, with momentum already built up
            masks.prune_to(scores.magnitude(masks.weights), 0.3 + step / 100)
            masks.clean_optimizer_state(opt)
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        masks.mask_grads()
        opt.step()  # as in the engine: no re-masking of the weights after the step
        for w, m in zip(masks.weights, masks.masks):
            assert bool((w[m == 0] == 0).all())
    for w, m in zip(masks.weights, masks.masks):
        state = opt.state[w]
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
            if key in state:
                assert bool((state[key][m == 0] == 0).all()), key
    check_integrity(masks, 0.7, "global")


def test_integrity_check_catches_leaks_and_wrong_counts():
    masks = MaskSet(small_net())
    masks.prune_to(scores.magnitude(masks.weights), 0.5)
    with pytest.raises(AssertionError, match="rule"):
        check_integrity(masks, 0.6, "global")
    with torch.no_grad():
        masks.weights[0][masks.masks[0] == 0] = 1.0
    with pytest.raises(AssertionError, match="not zero"):
        check_integrity(masks, 0.5, "global")


def test_sparsity_denominators():
    net = small_net()
    masks = MaskSet(net)
    masks.prune_to(scores.magnitude(masks.weights), 0.5)
    total = sum(p.numel() for p in net.parameters())
    assert masks.sparsity() == pytest.approx(masks.num_zeros() / masks.num_prunable)
    assert masks.sparsity_all() == pytest.approx(masks.num_zeros() / total)
    assert masks.sparsity_all() < masks.sparsity()


def test_lths_resnet_ticket_excludes_shortcuts_and_output_and_lands_on_72_9_percent_of_weights():
    """LTH's "Resnet-18" (our resnet20): 270,608 conv and linear weights, of which the 2,560
    downsample and 640 output weights are never pruned (counted by hand from the widths:
    16x32 + 32x64 shortcut weights, 64x10 output). Six rounds of 20% over the other 267,408
    remove 1 - 0.8**6 of them: 197,309 zeros = 72.91% of all weights (LTH: Pm = 27.1%)."""
    from repro import models
    from repro.pruning.masks import pruned_count

    model = models.build("resnet20")
    masks = MaskSet(model, exclude_last=True, exclude=["*downsample*"])
    assert not any("downsample" in n for n in masks.names) and "fc" not in masks.names
    assert masks.num_prunable == 270_608 - 16 * 32 - 32 * 64 - 64 * 10
    zeros = pruned_count(0.737856, masks.num_prunable)
    magnitudes = [w.detach().abs() for w in masks.weights]
    masks.prune_to(magnitudes, 0.737856, scope="global")
    assert masks.num_zeros() == zeros
    assert masks.sparsity_weights() == pytest.approx(zeros / 270_608) and round(masks.sparsity_weights(), 3) == 0.729
