"""Phase 1 of the GPU check, run before any timing: the suite's CUDA path is correct on the device.
The count rule ``floor(s*N + 0.5)`` at 11M / 20M weights (ties, layerwise), masked weights exactly
0.0 under bf16, ``channels_last`` and ``torch.compile``, no recompilation on a mask update, and a
resumed run giving the next epoch's numbers; each check on its own, so one failure hides no other."""

from __future__ import annotations

import math
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environment import dataset
from .phases import CapReached
from .profiles import SKIPPED_IN_DRY

if TYPE_CHECKING:
    from .phases import Run


class GraphCounter:
    """A ``torch.compile`` backend that counts the graphs dynamo hands it, then compiles them with
    ``inner`` ('inductor' on the GPU, 'eager' on the CPU): a recompilation shows up as one more graph."""

    def __init__(self, inner: str) -> None:
        self.inner = inner
        self.graphs = 0

    def __call__(self, gm: Any, example_inputs: list[Any]) -> Callable[..., Any]:
        self.graphs += 1
        if self.inner == "eager":
            return gm.forward
        from torch._dynamo import lookup_backend

        return lookup_backend(self.inner)(gm, example_inputs)


def check_subset(run: Run) -> Any:
    """A fixed random subset of CIFAR-10 (the JPEG copy is stored class by class), a whole number of batches."""
    import torch

    from repro.data import Dataset, Split

    p, data = run.profile, dataset(run)
    g = torch.Generator().manual_seed(0)
    train = torch.randperm(len(data.train), generator=g)[: p.check_batch * p.check_steps].sort().values
    test = torch.randperm(len(data.test), generator=g)[: p.check_test].sort().values
    return Dataset("cifar10", data.source, Split(data.train.images[train], data.train.labels[train]),
                   Split(data.test.images[test], data.test.labels[test]))


def leaked(masks: Any) -> int:
    """Masked weights that are not exactly 0.0."""
    return int(sum(((w != 0) & (m == 0)).sum().item() for w, m in zip(masks.weights, masks.masks)))


def _reset(masks: Any, initial: list[Any], transform: Callable[[Any], Any] = lambda w: w) -> None:
    """All masks back to ones and the weights back to (a transform of) their initial values."""
    import torch

    with torch.no_grad():
        for w, w0, m in zip(masks.weights, initial, masks.masks):
            w.copy_(transform(w0))
            m.fill_(1.0)


def check_count_rule(run: Run) -> dict[str, Any]:
    """``floor(s*N + 0.5)`` zeros at every sparsity (rising, as PMP asks), with massive ties, and per
    tensor in layerwise mode; the expected count is computed here, not by the suite's helper."""
    import torch

    from repro import models
    from repro.pruning.masks import MaskSet
    from repro.pruning.scores import magnitude

    device = torch.device(run.profile.device)
    detail: dict[str, Any] = {}
    ok = True
    for name in run.profile.count_models:
        torch.manual_seed(0)
        model = models.build(name, num_classes=10, in_channels=3, width=1.0).to(device)
        masks = MaskSet(model)
        n = masks.num_prunable
        initial = [w.detach().clone() for w in masks.weights]
        rows = []
        for s in run.profile.count_sparsities:
            masks.prune_to(magnitude(masks.weights), s)
            want, got = math.floor(s * n + 0.5), masks.num_zeros()
            rows.append({"sparsity": s, "zeros": got, "rule": want, "leaked": leaked(masks)})
        # ties: weights rounded to quarters, so thresholds fall inside huge runs of equal |w| (and zeros)
        _reset(masks, initial, lambda w: torch.round(w * 4) / 4)
        masks.prune_to(magnitude(masks.weights), 0.729)
        ties = {"sparsity": 0.729, "zeros": masks.num_zeros(), "rule": math.floor(0.729 * n + 0.5), "leaked": leaked(masks)}
        _reset(masks, initial)
        masks.prune_to(magnitude(masks.weights), 0.729, scope="layerwise")
        bad_layers = [nm for nm, m in zip(masks.names, masks.masks)
                      if int((m == 0).sum().item()) != math.floor(0.729 * m.numel() + 0.5)]
        model_ok = (all(r["zeros"] == r["rule"] and r["leaked"] == 0 for r in rows) and ties["zeros"] == ties["rule"]
                    and ties["leaked"] == 0 and not bad_layers and leaked(masks) == 0)
        ok &= model_ok
        detail[name] = {"num_prunable": n, "global": rows, "ties": ties, "layerwise_bad_layers": bad_layers, "pass": model_ok}
        del model, masks, initial
    return {"pass": ok, "detail": detail}


def check_masks_and_compile(run: Run) -> list[dict[str, Any]]:
    """Two checks from one compiled PMP run: three epochs of ResNet-18 under bf16, channels_last and
    torch.compile (epoch 1 warm-up, epoch 2 holds the mask updates, epoch 3 trains on the final mask).
    Graphs are counted before and after the epoch of mask updates; the masked weights must be exactly
    0.0 and the zeros must follow the count rule at the end."""
    import torch

    from repro import models
    from repro.config import OptimConfig, PrunerConfig, ScheduleConfig
    from repro.engine import Engine, LoopConfig, initialize
    from repro.pruning.masks import MaskSet
    from repro.pruning.methods import GradualMagnitude

    p = run.profile
    device = torch.device(p.device)
    torch.manual_seed(0)
    model = models.build("resnet18", num_classes=10, in_channels=3, width=p.check_width)
    initialize(model, "kaiming_normal")
    schedule = ScheduleConfig(name="linear", start=1 / 3, end=2 / 3, update_frequency=p.check_update_every)
    method = GradualMagnitude(PrunerConfig(name="pmp"), 0.729, schedule)
    loop = LoopConfig(epochs=3, batch_size=p.check_batch, seed=0, augment=True, progress="none", precision="bf16",
                      channels_last=True, compile=False, checkpoint_every=0)
    masks = MaskSet(model)
    engine = Engine(model, check_subset(run), method, masks, OptimConfig(lr=0.05), loop, device)
    counter = GraphCounter(p.compile_backend)
    engine.forward = torch.compile(engine.model, backend=counter)  # what LoopConfig(compile=True) does, counted
    method.before_training(engine.ctx)
    t0 = time.perf_counter()
    engine.train_epoch(0)
    method.after_epoch(engine.ctx, 0)
    warm_s = time.perf_counter() - t0
    graphs_warm, updates_before = counter.graphs, len(engine.state.density_log)
    engine.train_epoch(1)
    method.after_epoch(engine.ctx, 1)
    graphs_after, updates = counter.graphs, len(engine.state.density_log) - updates_before
    engine.train_epoch(2)
    n, zeros = masks.num_prunable, masks.num_zeros()
    bad = leaked(masks)
    common = {"model": f"resnet18 width {p.check_width}", "batch": p.check_batch, "steps_per_epoch": p.check_steps,
              "precision": "bf16", "channels_last": True, "compile_backend": p.compile_backend, "device": p.device}
    recompile = {
        "name": "mask update does not recompile", "pass": graphs_warm >= 1 and updates >= 1 and graphs_after == graphs_warm,
        "detail": {**common, "graphs_after_warmup_epoch": graphs_warm, "mask_updates_in_next_epoch": updates,
                   "graphs_after_mask_updates": graphs_after, "first_epoch_s_with_compile": round(warm_s, 2)},
    }
    zero = {
        "name": "masked weights exactly zero after steps (bf16, channels_last, compile)",
        "pass": bad == 0 and zeros == math.floor(0.729 * n + 0.5) and method.mask_is_final(engine.state.step),
        "detail": {**common, "steps": engine.state.step, "num_prunable": n, "zeros": zeros,
                   "rule": math.floor(0.729 * n + 0.5), "masked_but_nonzero": bad,
                   "mask_buffers_on_device": all(m.device.type == device.type for m in masks.masks)},
    }
    if p.compile_backend == "eager":
        recompile["detail"]["note"] = SKIPPED_IN_DRY["bf16-cl-compile"]
    return [zero, recompile]


def check_resume(run: Run) -> dict[str, Any]:
    """A run stopped after epoch 1 and resumed from its checkpoint (built from another init, so the
    weights must come from the file) must give epoch 2 as the uninterrupted run does. On CUDA the
    check runs with deterministic algorithms; exact equality is reported, and a pass there allows
    the last-bit differences the README states for CUDA."""
    import torch

    from repro import models
    from repro.config import OptimConfig, PrunerConfig, ScheduleConfig
    from repro.engine import Engine, LoopConfig, initialize
    from repro.pruning.masks import MaskSet
    from repro.pruning.methods import GradualMagnitude

    p = run.profile
    device = torch.device(p.device)
    folder = run.state_dir / "resume-check"
    shutil.rmtree(folder, ignore_errors=True)
    data = check_subset(run)

    class Crash(Exception):
        pass

    def crash(metrics: dict, step: int) -> None:
        # epoch 2 is logged before its checkpoint: dying here leaves epoch 1's checkpoint to resume from
        if step == 2:
            raise Crash

    def engine(path: Path, seed: int, on_epoch: Callable[[dict, int], None] = lambda m, s: None) -> Any:
        torch.manual_seed(seed)
        model = models.build("resnet18", num_classes=10, in_channels=3, width=p.check_width)
        initialize(model, "kaiming_normal")
        method = GradualMagnitude(PrunerConfig(name="pmp"), 0.729,
                                  ScheduleConfig(name="linear", start=0.0, end=1.0, update_frequency=p.check_update_every))
        loop = LoopConfig(epochs=2, batch_size=p.check_batch, seed=0, augment=True, progress="none", precision="bf16",
                          channels_last=True, compile=False, checkpoint_every=1, checkpoint_path=path)
        return Engine(model, data, method, MaskSet(model), OptimConfig(lr=0.05), loop, device, on_epoch=on_epoch)

    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        a = engine(folder / "a.pt", 0)
        a.run()
        b = engine(folder / "b.pt", 0, crash)
        try:
            b.run()
        except Crash:
            pass
        c = engine(folder / "b.pt", 12345)
        c.run()
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]
        shutil.rmtree(folder, ignore_errors=True)
    from repro import records as rec

    keys = (rec.TRAIN_LOSS, rec.TRAIN_ACC, rec.TEST_LOSS, rec.TEST_ACC, rec.SPARSITY, rec.EPOCH)
    ha, hc = a.state.history, c.state.history
    diffs = {k: abs(hc[-1][k] - ha[-1][k]) / max(abs(ha[-1][k]), 1e-12) for k in keys}
    masks_equal = all(torch.equal(x, y) for x, y in zip(a.masks.masks, c.masks.masks))
    weights_diff = max(float((x - y).abs().max()) for x, y in zip(a.model.state_dict().values(), c.model.state_dict().values())
                       if x.is_floating_point())
    exact = all(v == 0 for v in diffs.values()) and masks_equal and weights_diff == 0
    structural = (len(hc) == 2 and hc[-1][rec.EPOCH] == 2 and c.state.step == a.state.step
                  and c.masks.num_zeros() == a.masks.num_zeros() and hc[0] == b.state.history[0])
    close = (diffs[rec.TRAIN_LOSS] <= 1e-2 and diffs[rec.TEST_LOSS] <= 1e-2
             and abs(hc[-1][rec.TEST_ACC] - ha[-1][rec.TEST_ACC]) <= 2.0)  # percent
    ok = structural and (exact if device.type == "cpu" else (exact or close))
    return {"name": "resume from a checkpoint gives the next epoch's numbers", "pass": ok,
            "detail": {"device": p.device, "exact": exact, "structural": structural, "relative_differences": diffs,
                       "masks_equal": masks_equal, "max_weight_difference": weights_diff,
                       "uninterrupted_epoch_2": ha[-1], "resumed_epoch_2": hc[-1],
                       "criterion": "exact on CPU; on CUDA exact, or losses within 1% and accuracy within 2 points "
                                    "(deterministic algorithms on; bf16 autocast)"}}


def correctness(run: Run, result: dict[str, Any]) -> None:
    """Every check on its own, so that one failure does not hide the others."""
    checks: list[dict[str, Any]] = result.setdefault("checks", [])

    def one(name: str, fn: Callable[[], Any]) -> None:
        t0 = time.perf_counter()
        try:
            out = fn()
            rows = out if isinstance(out, list) else [out if "name" in out else {"name": name, **out}]
        except CapReached:
            checks.append({"name": name, "pass": False, "reason": "stopped at the phase's wall-time cap"})
            raise
        except Exception as exc:  # noqa: BLE001
            rows = [{"name": name, "pass": False, "reason": f"{type(exc).__name__}: {exc}".splitlines()[0],
                     "traceback": traceback.format_exc()[-2000:]}]
        for row in rows:
            row["wall_s"] = round(time.perf_counter() - t0, 2)
            checks.append(row)
            run.log(f"  check {row['name']}: {'PASS' if row['pass'] else 'FAIL'}")
        run.save()

    one("exact count rule floor(s*N+0.5)", lambda: check_count_rule(run))
    one("masked weights zero / no recompile", lambda: check_masks_and_compile(run))
    one("resume gives the next epoch", lambda: check_resume(run))
