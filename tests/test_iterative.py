"""LTH chains, one-shot pruning and mask transfer through the real loop, on synthetic data."""

import pytest
import torch
from omegaconf import OmegaConf

from repro import models
from repro.data import Batches, Dataset, Split
from repro.engine import Engine, LoopConfig, initialize
from repro.pruning.iterative import LotteryTicket, MaskTransfer, OneShot, layer_round_counts, shortened_round
from repro.pruning.masks import MaskSet, pruned_count
from repro.pruning.methods import Method

OPTIM = OmegaConf.create({"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
                          "lr_schedule": "multistep", "milestones": [0.5], "gamma": 0.1, "warmup_epochs": 0})


def synthetic(n=64, name="cifar10") -> Dataset:
    g = torch.Generator().manual_seed(0)
    shape = (3, 32, 32) if name == "cifar10" else (1, 28, 28)
    make = lambda k: Split(torch.randint(0, 256, (k, *shape), generator=g, dtype=torch.uint8),  # noqa: E731
                           torch.randint(0, 10, (k,), generator=g))
    return Dataset(name=name, source="synthetic", train=make(n), test=make(32))


def engine_for(method: Method, *, model_name="resnet20", epochs=2, seed=0, data=None, **loop) -> Engine:
    torch.manual_seed(seed)
    model = models.build(model_name, in_channels=3 if model_name != "lenet300" else 1, width=0.25)
    initialize(model, "kaiming_normal")
    masks = MaskSet(model)
    data = data or synthetic(name="cifar10" if model_name != "lenet300" else "mnist")
    cfg = LoopConfig(epochs=epochs, batch_size=16, eval_batch_size=32, seed=seed, progress="none", **loop)
    return Engine(model, data, method, masks, OPTIM, cfg, torch.device("cpu"))


def lth(**over) -> LotteryTicket:
    cfg = OmegaConf.create({"name": "lth", "scope": "global", "targets": [], "rate": 0.2, "layer_rates": {},
                            "rewind_step": 0, **over})
    return LotteryTicket(cfg, over.get("sparsity", 0.5), None)


class Recorder(Method):
    """Dense training that keeps the full state after optimizer step k."""

    def __init__(self, k):
        self.k, self.state = k, None

    def after_step(self, ctx, step):
        if step == self.k:
            self.state = {n: t.detach().clone() for n, t in ctx.model.state_dict().items()}
        return False


def test_rounds_remove_a_fifth_of_survivors_and_land_exactly_on_targets():
    assert shortened_round(0.0, 0.2, 0.9) == pytest.approx(0.2)
    assert shortened_round(0.488, 0.2, 0.5) == 0.5
    method = lth(targets=[0.5, 0.6])
    eng = engine_for(method, epochs=1)
    eng.run()
    n = eng.masks.num_prunable
    by_cycle = {h["cycle"]: h["sparsity"] for h in eng.state.history}
    expected = [0.0, 0.2, 0.36, 1 - 0.8**3, 0.5, 0.6]  # 1 - 0.8^r until a target is hit exactly
    assert [by_cycle[c] for c in range(6)] == [pruned_count(s, n) / n for s in expected]


def test_rewind_restores_the_state_at_step_k_with_fresh_optimizer_and_data_position():
    k = 5  # mid-epoch: 4 steps per epoch
    reference = Recorder(k)
    engine_for(reference, epochs=2).run()

    method = lth(targets=[0.2], rewind_step=k)
    eng = engine_for(method, epochs=2)
    seen = {}
    original_after_cycle = method.after_cycle

    def after_cycle(ctx, cycle):
        before = [m.clone() for m in ctx.masks.masks]
        more = original_after_cycle(ctx, cycle)
        if more:
            seen["state"] = {n: t.detach().clone() for n, t in ctx.model.state_dict().items()}
            seen["masks_only_lost_ones"] = all(bool((a <= b).all()) for a, b in zip(ctx.masks.masks, before))
        return more

    def first_step_of_cycle_1(ctx, step):
        if eng.state.cycle == 1 and "momentum_is_grad" not in seen:
            seen["first_step"] = step
            seen["momentum_is_grad"] = all(
                torch.equal(ctx.optimizer.state[p]["momentum_buffer"], p.grad) for p in ctx.model.parameters())
            seen["lr"] = ctx.optimizer.param_groups[0]["lr"]
        return LotteryTicket.after_step(method, ctx, step)

    method.after_cycle = after_cycle
    method.after_step = first_step_of_cycle_1
    calls = []
    real_epoch = Batches.epoch

    def spy(self, seed, epoch, start=0):
        calls.append((eng.state.cycle, epoch, start))
        return real_epoch(self, seed, epoch, start)

    Batches.epoch = spy
    try:
        eng.run()
    finally:
        Batches.epoch = real_epoch
    state = seen["state"]
    for name, value in reference.state.items():
        if name.endswith("weight_mask"):
            continue
        mask_name = name[: -len("weight")] + "weight_mask"
        expected = value * state[mask_name] if mask_name in state else value
        assert torch.equal(state[name], expected), name  # weights, BN affine and running statistics
    assert seen["masks_only_lost_ones"]
    assert seen["first_step"] == k + 1
    assert seen["momentum_is_grad"]  # a fresh optimizer: no momentum carried over
    assert seen["lr"] == pytest.approx(0.005)  # the LR schedule resumes at step k: past the decay at step 4
    assert (1, 1, 1) in calls  # cycle 1 resumes the data order at epoch 1, batch 1 (= step 5)


def test_per_layer_rates_shorten_to_the_exact_global_count():
    net = models.build("lenet300")
    masks = MaskSet(net)
    target = pruned_count(0.1, masks.num_prunable)
    counts = layer_round_counts(masks, [0.2, 0.2, 0.1], target)
    assert sum(counts) == target
    full = layer_round_counts(masks, [0.2, 0.2, 0.1], masks.num_prunable)
    assert full == [round(0.2 * 235_200), round(0.2 * 30_000), round(0.1 * 1000)]


def test_lth_chain_logs_each_target_with_cumulative_cost():
    method = lth(targets=[0.36, 0.5])
    reports = []
    eng = engine_for(method, epochs=1)
    eng.on_cycle = lambda metrics, cycle, target: reports.append((cycle, target, metrics))
    eng.run()
    assert [(c, t) for c, t, _ in reports] == [(2, 0.36), (4, 0.5)]
    first, second = reports[0][2], reports[1][2]
    assert first["final_sparsity"] == pruned_count(0.36, eng.masks.num_prunable) / eng.masks.num_prunable
    assert first["cost_cycles"] == 3 and second["cost_cycles"] == 5
    assert second["cost_train_flops"] > first["cost_train_flops"] > first["cost_dense_cycle_flops"]


def test_oneshot_trains_dense_then_prunes_and_finetunes():
    cfg = OmegaConf.create({"name": "oneshot", "scope": "global", "finetune_epochs": 1})
    eng = engine_for(OneShot(cfg, 0.8, None), epochs=2)
    final = eng.run()
    assert [(h["cycle"], h["sparsity"] > 0) for h in eng.state.history] == [(0, False), (0, False), (1, True)]
    assert final["num_zeros"] == pruned_count(0.8, eng.masks.num_prunable)
    assert final["cost_epochs"] == 3


def test_mask_from_reproduces_the_saved_mask_exactly(tmp_path):
    donor = engine_for(lth(targets=[0.5]), epochs=1)
    donor.run()
    path = tmp_path / "final_state_dict.pt"
    torch.save(donor.model.state_dict(), path)
    saved = [m.clone() for m in donor.masks.masks]

    def transfer(**over):
        cfg = OmegaConf.create({"name": "mask_from", "scope": "global", "source": str(path), "init": "original",
                                "rewind_step": 0, "shuffle": False, **over})
        eng = engine_for(MaskTransfer(cfg, 0.0, None), epochs=1, seed=3)
        eng.run()
        return eng

    eng = transfer()
    assert all(torch.equal(a, b) for a, b in zip(eng.masks.masks, saved))
    shuffled = transfer(shuffle=True)
    for a, b in zip(shuffled.masks.masks, saved):
        assert int(a.sum()) == int(b.sum())  # same per-layer density
    assert not all(torch.equal(a, b) for a, b in zip(shuffled.masks.masks, saved))
    late = transfer(rewind_step=2)
    assert all(torch.equal(a, b) for a, b in zip(late.masks.masks, saved))


@pytest.mark.parametrize("scheme", ["kaiming_normal", "default"])
def test_mask_from_random_init_draws_fresh_weights_under_every_init_scheme(tmp_path, scheme):
    """init=random must not keep the original weights, including trainer.init=default (PyTorch's own)."""
    donor = engine_for(lth(targets=[0.5]), epochs=1)
    donor.run()
    path = tmp_path / "final_state_dict.pt"
    torch.save(donor.model.state_dict(), path)

    def start(init):
        cfg = OmegaConf.create({"name": "mask_from", "scope": "global", "source": str(path), "init": init,
                                "rewind_step": 0, "shuffle": False})
        eng = engine_for(MaskTransfer(cfg, 0.0, None), epochs=1, seed=3)
        eng.ctx.init = scheme
        before = {n: p.detach().clone() for n, p in eng.model.named_parameters()}
        eng.method.before_training(eng.ctx)
        return before, {n: p.detach().clone() for n, p in eng.model.named_parameters()}, eng

    before, after, eng = start("original")
    for name, mask in zip(eng.masks.names, eng.masks.masks):
        assert torch.equal(after[f"{name}.weight"], before[f"{name}.weight"] * mask), name
    before, after, eng = start("random")
    for name, mask in zip(eng.masks.names, eng.masks.masks):
        kept = mask != 0
        assert not torch.equal(after[f"{name}.weight"][kept], before[f"{name}.weight"][kept]), name
        assert bool((after[f"{name}.weight"][~kept] == 0).all()), name


def test_mask_from_rewind_starts_the_sparse_run_with_a_fresh_optimizer(tmp_path):
    """LTH rewinding to step k restarts the optimizer; mask_from with rewind_step=k must too,
    and the loop must step that new optimizer, not the dense one it started with."""
    donor = engine_for(lth(targets=[0.5]), epochs=1)
    donor.run()
    path = tmp_path / "final_state_dict.pt"
    torch.save(donor.model.state_dict(), path)
    seen = {}

    class Spy(MaskTransfer):
        def after_step(self, ctx, step):
            changed = super().after_step(ctx, step)
            if step == 2:
                seen["dense"] = seen.get("first")
                seen["at_k"] = (ctx.optimizer, sum(len(s) for s in ctx.optimizer.state.values()))
            if step == 1:
                seen["first"] = ctx.optimizer
            if step == 3:
                seen["after"] = ctx.optimizer
            return changed

    cfg = OmegaConf.create({"name": "mask_from", "scope": "global", "source": str(path), "init": "original",
                            "rewind_step": 2, "shuffle": False})
    eng = engine_for(Spy(cfg, 0.0, None), epochs=1, seed=3)
    eng.run()
    fresh, state_entries = seen["at_k"]
    assert fresh is not seen["dense"]
    assert state_entries == 0  # no momentum from the two dense steps
    assert seen["after"] is fresh and sum(len(s) for s in fresh.state.values()) > 0  # the loop stepped it


def test_pmp_counts_its_mask_updates_and_warns_when_the_schedule_is_not_gradual(caplog):
    """synthetic(64) at batch 16 is 4 steps an epoch; over 2 epochs (8 steps) the default window
    0-0.5 ends at step 4: updates every 50 steps give steps {0, 4} (2 updates, and step 0 at
    sparsity 0 prunes nothing: 1 mask change), every step gives {0, 1, 2, 3, 4} (4 changes)."""
    from repro.pruning.methods import GradualMagnitude

    def pmp(every):
        sch = OmegaConf.create({"name": "linear", "initial_sparsity": 0.0, "start": 0.0, "end": 0.5,
                                "update_frequency": every, "update_unit": "iterations"})
        return GradualMagnitude(OmegaConf.create({"name": "pmp", "scope": "global"}), 0.5, sch)

    with caplog.at_level("WARNING"):
        sparse = engine_for(pmp(50), epochs=2).run()
    assert sparse["mask_updates"] == 1.0
    assert "plans only 2 mask update(s)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        gradual = engine_for(pmp(1), epochs=2).run()
    assert gradual["mask_updates"] == 4.0 and "plans only" not in caplog.text
