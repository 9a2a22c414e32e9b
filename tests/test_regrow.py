"""The seams sparse-to-sparse methods need: Erdős–Rényi layer counts, masks that regrow through
MaskSet.update with clean optimizer state, the drop/grow count rule, the monotone check, the
registry's refusals and RigL's dense-gradient cost. Expected values are worked by hand."""

import pytest
import torch
import torch.nn as nn

from repro.cost import training_flops
from repro.pruning import methods
from repro.pruning.density import er_densities, zeros_per_layer
from repro.pruning.masks import MaskSet
from repro.pruning.methods import Method, register
from repro.pruning.regrow import cosine_fraction, drop_and_grow
from tests.test_iterative import engine_for

# ----------------------------------------------------------------------------- ER / ERK


def test_erk_counts_of_a_two_layer_mlp_by_hand():
    shapes = [(8, 8), (2, 8)]  # raw densities 16/64 = 0.25 and 10/16 = 0.625
    # s = 0.5: keep 40 of 80; eps = 40 / (0.25*64 + 0.625*16) = 40/26; kept 24.615 and 15.385 ->
    # floors 24 + 15 = 39, the larger remainder (layer 0) gets the 40th
    assert er_densities(shapes, 0.5) == pytest.approx([0.25 * 40 / 26, 0.625 * 40 / 26])
    assert zeros_per_layer(shapes, 0.5, "erk") == [64 - 25, 16 - 15]
    # s = 0.2: eps * 0.625 = 64/26 * 0.625 > 1, so layer 1 is dense (16 kept) and layer 0 keeps the
    # other 48 of its 64 (eps = 48/16 = 3, density 0.75)
    assert er_densities(shapes, 0.2) == pytest.approx([0.75, 1.0])
    assert zeros_per_layer(shapes, 0.2, "erk") == [16, 0]


def test_er_ignores_the_kernel_and_erk_counts_it():
    shapes = [(4, 2, 3, 3), (10, 36)]  # 72 and 360 weights; s = 0.9 keeps 432 - floor(388.8 + 0.5) = 43
    # ERK raw: 12/72 and 46/360; eps = 43.2 / (12 + 46); kept 8.938 and 34.262 -> 9 and 34
    assert zeros_per_layer(shapes, 0.9, "erk") == [72 - 9, 360 - 34]
    # ER raw: 6/8 and 46/360; eps = 43.2 / (54 + 46); kept 23.328 and 19.872 -> 23 and 20
    assert zeros_per_layer(shapes, 0.9, "er") == [72 - 23, 360 - 20]
    assert zeros_per_layer(shapes, 0.9, "uniform") == zeros_per_layer(shapes, 0.9, "layerwise") == [65, 324]


def test_prune_to_with_erk_keeps_the_layer_counts():
    net = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    masks = MaskSet(net)
    masks.prune_to([torch.rand(8, 8), torch.rand(2, 8)], 0.5, scope="erk")
    assert [int((m == 0).sum()) for m in masks.masks] == [39, 1]


# ----------------------------------------------------------------------------- update and state


def _net_with_state(optim: str):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2, bias=False))
    masks = MaskSet(net)
    masks.load([torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])])
    opt = (torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9) if optim == "sgd"
           else torch.optim.Adam(net.parameters(), lr=0.1))
    net(torch.ones(4, 3)).sum().backward()
    opt.step()
    keys = ("momentum_buffer",) if optim == "sgd" else ("exp_avg", "exp_avg_sq")
    for key in keys:
        opt.state[net[0].weight][key].fill_(1.0)
    return net, masks, opt, keys


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_update_revives_and_resets_state_at_every_dropped_and_grown_position(optim):
    net, masks, opt, keys = _net_with_state(optim)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.5, -0.7, 0.0], [0.0, 0.3, 0.9]]))
    # drop (0,0), grow (0,2); row 1 unchanged
    dropped, grown = masks.update([torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])], opt)
    assert dropped[0].tolist() == [[True, False, False], [False, False, False]]
    assert grown[0].tolist() == [[False, False, True], [False, False, False]]
    assert torch.equal(net[0].weight, torch.tensor([[0.0, -0.7, 0.0], [0.0, 0.3, 0.9]]))
    for key in keys:  # zero at the two changed positions, untouched elsewhere
        assert opt.state[net[0].weight][key].tolist() == [[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]


# ----------------------------------------------------------------------------- drop and grow


def test_drop_and_grow_moves_floor_f_active_per_layer():
    mask = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    weight = torch.tensor([0.9, -0.1, 0.5, 0.05, -0.6, 0.0, 0.0, 0.0])
    grow = torch.tensor([0.0, 5.0, 0.0, 0.1, 0.0, 2.0, 3.0, 1.0])
    # 5 active, f = 0.5: floor(2.5) = 2 dropped: |w| 0.05 (index 3) and 0.1 (index 1); then 2 grown
    # among the inactive {1, 3, 5, 6, 7} by grow score: index 1 (5.0, regrown) and index 6 (3.0)
    new = drop_and_grow(weight, mask, grow, 0.5)
    assert new.tolist() == [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert drop_and_grow(weight, mask, grow, 0.1).tolist() == mask.tolist()  # floor(0.5) = 0: no change


def test_cosine_drop_fraction_by_hand():
    assert cosine_fraction(0.3, 0, 100) == pytest.approx(0.3)
    assert cosine_fraction(0.3, 50, 100) == pytest.approx(0.15)
    assert cosine_fraction(0.3, 100, 100) == pytest.approx(0.0)
    assert cosine_fraction(0.3, 150, 100) == pytest.approx(0.0)


# ----------------------------------------------------------------------------- monotone and registry


class Reviver(Method):
    """Declares monotone masks, then revives a weight through the regrowing API."""

    name = "reviver-test"

    def before_training(self, ctx):
        ctx.masks.prune_to([torch.rand(w.shape) for w in ctx.masks.weights], 0.5)

    def after_step(self, ctx, step):
        if step == 2:
            ctx.masks.update([torch.ones_like(m) for m in ctx.masks.masks], ctx.optimizer)
            return True
        return False


def test_a_monotone_method_that_revives_a_weight_is_stopped():
    eng = engine_for(Reviver(None, 0.5, None), model_name="lenet300", epochs=1)
    with pytest.raises(RuntimeError, match="declares monotone masks but revived"):
        eng.run()


def test_the_same_reviver_declared_non_monotone_runs():
    class Regrower(Reviver):
        monotone = False

    eng = engine_for(Regrower(None, 0.5, None), model_name="lenet300", epochs=1)
    eng.run()
    assert eng.masks.sparsity() == 0.0


def test_the_registry_refuses_a_taken_name_and_a_missing_one():
    class Again(Method):
        name = "pmp"

    class Nameless(Method):
        pass

    with pytest.raises(TypeError, match="taken"):
        register(Again)
    with pytest.raises(TypeError, match="no name"):
        register(Nameless)
    assert methods.REGISTRY["pmp"].__name__ == "GradualMagnitude"


def test_a_new_method_counts_sparsity_and_schedule_unless_it_opts_out():
    class Forgetful(Method):
        name = "forgetful-test"

    assert (Forgetful.uses_sparsity, Forgetful.uses_schedule, Forgetful.uses_masks) == (True, True, True)
    dense = methods.REGISTRY["dense"]
    assert (dense.uses_sparsity, dense.uses_schedule, dense.uses_masks) == (False, False, False)


# ----------------------------------------------------------------------------- cost


def test_a_dense_gradient_step_costs_f_dense_minus_f_sparse_more():
    macs = {"a": 100, "b": 50}
    log = [(0, [0.1, 0.2])]  # sparse from the start: f_S = 2 * (10 + 10) = 40, f_D = 300 per sample
    base = training_flops(macs, 8, 10, log, ["a", "b"])
    assert base == pytest.approx(10 * 3 * 40 * 8)
    got = training_flops(macs, 8, 10, log, ["a", "b"], dense_gradient_steps=[3, 6])
    # RigL's appendix H: an update step costs 2 f_S + f_D instead of 3 f_S
    assert got == pytest.approx(8 * (8 * 3 * 40 + 2 * (2 * 40 + 300)))


# ----------------------------------------------------------------------------- RigL reads the dense gradient


def test_rigl_grows_where_the_dense_gradient_of_the_steps_batch_is_largest():
    """Recompute the first batch's gradient on a copy of the starting network (independently of
    the loop), then check the first update: no position left inactive has a larger |g| than a
    grown one. Adam: the loop masks its gradients before the step, so the hook must come first."""
    import copy

    import torch.nn.functional as F
    from omegaconf import OmegaConf

    from repro.pruning.rigl import RigL, RigLConfig
    from tests.test_iterative import OPTIM

    class Recorded(RigL):
        name = "rigl-recorded-test"

        def before_training(self, ctx):
            super().before_training(ctx)
            self.start = copy.deepcopy(ctx.model)
            self.before = ctx.masks.state()

        def after_step(self, ctx, step):
            changed = super().after_step(ctx, step)
            if step == 1:
                self.after = ctx.masks.state()
            return changed

    cfg = OmegaConf.structured(RigLConfig(delta_t=1, t_end=1.0, drop_schedule="constant"))
    method = Recorded(cfg, 0.9, None)
    eng = engine_for(method, model_name="lenet300", epochs=1)
    eng.optim_cfg = OmegaConf.merge(OPTIM, {"name": "adam", "lr": 1e-3})
    eng._new_optimizer(0)
    x, y = next(iter(eng.batches.epoch(eng.cfg.seed, 0)))
    eng.run()
    net = method.start
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    grads = [net.get_submodule(n).weight.grad.abs() for n in eng.masks.names]
    grown_any = False
    for g, old, new in zip(grads, method.before, method.after):
        grown = (old == 0) & (new != 0)
        inactive = new == 0
        if grown.any():
            grown_any = True
            assert float(g[grown].min()) >= float(g[inactive].max())
    assert grown_any


@pytest.mark.parametrize("name", ["set", "rigl"])
def test_grown_weights_start_as_the_method_says(name):
    """SET draws grown weights from the initialisation (kaiming normal: std sqrt(2 / fan_in));
    RigL starts them at exactly 0.0. Looked at right after the first update."""
    from omegaconf import OmegaConf

    cls = methods.REGISTRY[name]

    class Recorded(cls):
        name = f"{cls.name}-grown-test"

        def after_step(self, ctx, step):
            before = ctx.masks.state()
            changed = super().after_step(ctx, step)
            if changed and not hasattr(self, "grown"):
                self.grown = [(w.detach()[(m0 == 0) & (m1 != 0)].clone(), w.shape[1])
                              for w, m0, m1 in zip(ctx.masks.weights, before, ctx.masks.masks)]
            return changed

    cfg = OmegaConf.structured(cls.Config(delta_t=1, delta_unit="epochs", t_end=1.0, drop_schedule="constant"))
    method = Recorded(cfg, 0.9, None)
    eng = engine_for(method, model_name="lenet300", epochs=2)
    eng.run()
    fc1, fan_in = method.grown[0]
    assert fc1.numel() > 1000
    if name == "rigl":
        assert all(bool((g == 0).all()) for g, _ in method.grown)
    else:
        assert bool((fc1 != 0).all())
        assert 0.9 < float(fc1.std()) / (2.0 / fan_in) ** 0.5 < 1.1
