"""``make bench`` / ``python -m repro.bench``: is the suite fast, measured against its peers?

Everything that is compared runs in ONE process, interleaved (A B C D, then D C B A, ...),
after one discarded warm-up round, so that drift on a shared machine hits every contender
alike. Each ratio is the median over repeats of the per-round (paired) ratio.

1. training throughput (images/s) of the suite's one loop (:class:`repro.engine.Engine`),
   ``dense`` and ``pmp``, with pruning active in every measured step window (the linear
   schedule spans the whole benchmark; the mask is recomputed every ``update_frequency``
   steps and every measurement holds the same number of updates);
2. the peer to beat: the same PMP schedule done the common way, with
   ``torch.nn.utils.prune.global_unstructured`` (L1Unstructured over the current weights,
   forward pre-hooks) in a bare loop;
3. a bare PyTorch loop on the same model and in-memory data (randperm, slice, normalise,
   forward, backward, step): the suite's dense loop as a fraction of it; and, without a target,
   the suite's dense loop stepping ``torch.optim.SGD`` instead of its own
   :class:`repro.optim.MaskedSGD`, so that a reader sees how much of the ratios against
   torch-SGD loops (bare, the peer) the optimizer accounts for;
4. exact global mask selection (``MaskSet.prune_to`` -> ``select_global``) over the prunable
   weights of ResNet-18 (11M) and VGG-19 (20M): time and extra peak memory, each model in a
   fresh subprocess (the peak resident set is reset through /proc/self/clear_refs);
5. data: batches/s of :class:`repro.data.Batches` (augment=True, uint8 tensors on the device)
   against torchvision's DataLoader with the standard transforms over the same images held
   in memory as PIL images (num_workers 0 and 2).

Training contenders run without augmentation (all four do the same work; the augmenting
loader is item 5), at fp32 unless ``--precision bf16``, with tracking off.
Results: a table on stdout, ``results/bench/<device>-<date>.json`` and ``results/bench/latest.md``.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from repro import models, runtime
from repro.config import OptimConfig, PrunerConfig, ScheduleConfig
from repro.data import STATS, Batches, Dataset, Normalizer, Split
from repro.engine import Engine, LoopConfig, initialize
from repro.pruning.masks import MaskSet, pruned_count
from repro.pruning.methods import GradualMagnitude, Method
from repro.pruning.scores import magnitude
from repro.tracking import PROJECT_ROOT, git_info

SCHEMA = 1

#: the bar each ratio must clear (CPU targets)
TARGETS = {
    "pmp/dense": 0.97,
    "dense/bare": 0.95,
    "pmp/hooks": 1.0,
    "pmp/hooks (lenet300, batch <= 128)": 1.10,
    "selection seconds (20M weights)": 1.0,
    "selection extra memory / weights": 4.0,
    "loader ours/torchvision": 5.0,
}


@dataclass(frozen=True)
class TrainSpec:
    """One training-throughput comparison: a model on a dataset at a batch size, ``steps`` per measurement."""

    key: str
    model: str
    dataset: str
    batch: int
    steps: int
    width: float = 1.0


# Short windows, many rounds: on a shared VM the noise comes in bursts and slow drifts, so
# pairing measurements a fraction of a second apart and taking the median over 11 rounds is
# steadier than 5 rounds of several seconds (steps stay multiples of update_frequency).
FULL_SPECS = (
    TrainSpec("lenet300-b60", "lenet300", "mnist", 60, 300),
    TrainSpec("lenet300-b128", "lenet300", "mnist", 128, 150),
    TrainSpec("lenet5-b128", "lenet5", "mnist", 128, 50),
    TrainSpec("vgg19w0.125-b128", "vgg19", "cifar10", 128, 50, 0.125),
)
QUICK_SPECS = (
    TrainSpec("lenet300-b60", "lenet300", "mnist", 60, 200),
    TrainSpec("lenet300-b128", "lenet300", "mnist", 128, 100),
    TrainSpec("lenet5-b128", "lenet5", "mnist", 128, 50),
    TrainSpec("vgg19w0.125-b128", "vgg19", "cifar10", 128, 50, 0.125),
)
SELECTION_MODELS = ("resnet18", "vgg19")


@dataclass
class Settings:
    device: str = "cpu"
    repeats: int = 11
    warmup: int = 1
    precision: str = "fp32"
    #: PMP mask recomputation period (iterations), suite and peer alike
    update_frequency: int = 50
    #: sparsity reached at the last measured step (linear from 0 over the whole benchmark)
    final_sparsity: float = 0.9
    lr: float = 0.01
    selection_repeats: int = 5
    loader_batch: int = 128
    loader_batches: int = 60
    loader_workers: tuple[int, ...] = (0, 2)


# ----------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where getrusage is unavailable)."""
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, OSError):
        return 0


def timed(fn: Callable[[], int], device: torch.device) -> tuple[float, int, int]:
    """Seconds ``fn`` takes (device work included), the item count it reports and the minor page
    faults it caused (memory the allocator handed back to the system and then touched again);
    no GC pause inside."""
    sync(device)
    gc.disable()
    try:
        faults = minor_faults()
        start = time.perf_counter()
        items = fn()
        sync(device)
        return time.perf_counter() - start, items, minor_faults() - faults
    finally:
        gc.enable()


def interleave(contenders: dict[str, Callable[[], int]], repeats: int, warmup: int,
               device: torch.device) -> dict[str, dict[str, list[float]]]:
    """Run the contenders round-robin, order reversed every other round; rates per contender.

    Returns ``{name: {"rate": [...], "seconds": [...], "faults": [...]}}`` with one entry per
    measured round.
    """
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            timed(contenders[name], device)
    out: dict[str, dict[str, list[float]]] = {n: {"rate": [], "seconds": [], "faults": []} for n in names}
    for i in range(repeats):
        gc.collect()  # once per round, outside the timed windows
        for name in names if i % 2 == 0 else names[::-1]:
            seconds, items, faults = timed(contenders[name], device)
            out[name]["rate"].append(items / seconds)
            out[name]["seconds"].append(seconds)
            out[name]["faults"].append(faults)
    return out


def summary(values: list[float]) -> dict[str, Any]:
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q1, "q3": q3, "min": min(values), "max": max(values),
            "runs": values}


def paired(a: list[float], b: list[float]) -> dict[str, Any]:
    """Per-round ratios a_i / b_i and their median (the number a target is checked against)."""
    return summary([x / y for x, y in zip(a, b, strict=True)])


# ----------------------------------------------------------------------------- training contenders


class TorchSGDEngine(Engine):
    """The suite's loop stepping ``torch.optim.SGD`` (the loop then masks gradients): what the suite's
    own SGD (:class:`repro.optim.MaskedSGD`) contributes to its ratios against loops that use torch's."""

    def build_optimizer(self, masks: dict[torch.Tensor, torch.Tensor] | None) -> torch.optim.Optimizer:
        o = self.optim_cfg
        return torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                               weight_decay=o.weight_decay)


class SuiteLoop:
    """The suite's loop: :class:`Engine` with the dense or PMP method, one epoch per call."""

    def __init__(self, method: Method, model: nn.Module, dataset: Dataset, batch: int, epochs: int,
                 device: torch.device, settings: Settings, engine: type[Engine] = Engine) -> None:
        loop = LoopConfig(epochs=epochs, batch_size=batch, seed=0, augment=False, progress="none",
                          precision=settings.precision, checkpoint_every=0, checkpoint_path=None)
        optim = OptimConfig(lr=settings.lr)
        self.engine = engine(model, dataset, method, MaskSet(model), optim, loop, device)
        method.before_training(self.engine.ctx)
        self.epoch = 0

    def __call__(self) -> int:
        self.engine.train_epoch(self.epoch)
        self.epoch += 1
        return len(self.engine.train_split)


class BareLoop:
    """A minimal PyTorch loop: randperm, slice, normalise, forward, backward, step."""

    def __init__(self, model: nn.Module, split: Split, dataset: str, batch: int, device: torch.device,
                 settings: Settings) -> None:
        self.model = model.to(device)
        self.images, self.labels = split.images.to(device), split.labels.to(device)
        self.batch = batch
        self.device = device
        mean, std = STATS[dataset]
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, weight_decay=5e-4)
        self.bf16 = settings.precision == "bf16"
        self.epoch = 0

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.epoch)
        order = torch.randperm(len(self.labels), generator=g).to(self.device)
        for i in range(0, len(order), self.batch):
            idx = order[i : i + self.batch]
            yield (self.images[idx].float() - self.mean) / self.std, self.labels[idx]

    def after_step(self) -> None:
        pass

    def __call__(self) -> int:
        self.model.train()
        seen = 0
        for x, y in self.batches():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.after_step()
            seen += len(y)
        self.epoch += 1
        return seen


class PruneHooksPMP(BareLoop):
    """The peer: PMP the common way. ``torch.nn.utils.prune.global_unstructured`` with
    L1Unstructured importance over the current (masked) weights, re-pruned every
    ``update_frequency`` steps on the same linear schedule; masks live in forward pre-hooks."""

    def __init__(self, model: nn.Module, split: Split, dataset: str, batch: int, device: torch.device,
                 settings: Settings, total_steps: int) -> None:
        super().__init__(model, split, dataset, batch, device, settings)
        self.params = [(m, "weight") for m in self.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        self.num_weights = sum(m.weight.numel() for m, _ in self.params)
        self.every = settings.update_frequency
        self.final = settings.final_sparsity
        self.total = total_steps
        self.step = 0
        self.pruned = 0

    def after_step(self) -> None:
        import torch.nn.utils.prune as prune

        self.step += 1
        if self.step % self.every and self.step != self.total:
            return
        want = pruned_count(self.final * min(1.0, self.step / self.total), self.num_weights)
        if want > self.pruned:
            prune.global_unstructured(self.params, pruning_method=prune.L1Unstructured, amount=want - self.pruned)
            self.pruned = want


def _subset(dataset: Dataset, n: int, test: int) -> Dataset:
    if n > len(dataset.train):
        raise ValueError(f"{dataset.name} has {len(dataset.train)} training images, the spec needs {n}")
    train = Split(dataset.train.images[:n], dataset.train.labels[:n])
    return Dataset(dataset.name, dataset.source, train, Split(dataset.test.images[:test], dataset.test.labels[:test]))


def bench_training(spec: TrainSpec, dataset: Dataset, settings: Settings) -> dict[str, Any]:
    """Interleave dense, pmp (suite), hooks (peer) and bare on one spec; rates and paired ratios."""
    device = torch.device(settings.device)
    if spec.steps % settings.update_frequency:
        raise ValueError(f"{spec.key}: steps ({spec.steps}) must be a multiple of update_frequency so that "
                         "every measurement holds the same number of mask updates")
    data = _subset(dataset, spec.steps * spec.batch, spec.batch)
    epochs = settings.warmup + settings.repeats
    torch.manual_seed(0)
    base = models.build(spec.model, num_classes=10, in_channels=dataset.in_channels, width=spec.width)
    initialize(base, "kaiming_normal")
    schedule = ScheduleConfig(name="linear", initial_sparsity=0.0, start=0.0, end=1.0,
                              update_frequency=settings.update_frequency, update_unit="iterations")
    pmp = GradualMagnitude(PrunerConfig(name="pmp", scope="global"), settings.final_sparsity, schedule)
    dense = Method(PrunerConfig(name="dense"), 0.0, schedule)
    contenders: dict[str, Callable[[], int]] = {
        "dense": SuiteLoop(dense, copy.deepcopy(base), data, spec.batch, epochs, device, settings),
        "dense-torchsgd": SuiteLoop(dense, copy.deepcopy(base), data, spec.batch, epochs, device, settings,
                                    engine=TorchSGDEngine),
        "pmp": SuiteLoop(pmp, copy.deepcopy(base), data, spec.batch, epochs, device, settings),
        "hooks": PruneHooksPMP(copy.deepcopy(base), data.train, dataset.name, spec.batch, device, settings,
                               total_steps=epochs * spec.steps),
        "bare": BareLoop(copy.deepcopy(base), data.train, dataset.name, spec.batch, device, settings),
    }
    runs = interleave(contenders, settings.repeats, settings.warmup, device)
    rates = {name: r["rate"] for name, r in runs.items()}
    lenet_small = spec.model == "lenet300" and spec.batch <= 128
    hooks_key = "pmp/hooks (lenet300, batch <= 128)" if lenet_small else "pmp/hooks"
    ratios = {
        "pmp/dense": {**paired(rates["pmp"], rates["dense"]), "target": TARGETS["pmp/dense"]},
        "dense/bare": {**paired(rates["dense"], rates["bare"]), "target": TARGETS["dense/bare"]},
        "pmp/hooks": {**paired(rates["pmp"], rates["hooks"]), "target": TARGETS[hooks_key]},
    }
    for r in ratios.values():
        r["pass"] = r["median"] >= r["target"]
    # no target: how much of dense/bare and pmp/hooks the suite's SGD accounts for
    ratios["dense/dense-torchsgd"] = paired(rates["dense"], rates["dense-torchsgd"])
    return {
        **asdict(spec),
        "images_per_measurement": spec.steps * spec.batch,
        "mask_updates_per_measurement": spec.steps // settings.update_frequency,
        "num_prunable": contenders["pmp"].engine.masks.num_prunable,
        "final_sparsity_pmp": contenders["pmp"].engine.masks.sparsity(),
        "contenders": {name: {"images_per_s": summary(r["rate"]), "seconds": r["seconds"], "minor_faults": r["faults"]}
                       for name, r in runs.items()},
        "ratios": ratios,
    }


# ----------------------------------------------------------------------------- selection (subprocess)


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Release freed heap pages and reset the peak RSS (Linux: clear_refs 5); False if impossible."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def _rss_bytes() -> int:
    import resource

    kb = _status_kb("VmRSS")
    return 1024 * (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _peak_bytes() -> int:
    import resource

    kb = _status_kb("VmHWM")
    return 1024 * (kb if kb is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def selection_worker(model_name: str, device_name: str, repeats: int) -> dict[str, Any]:
    """Time ``MaskSet.prune_to`` (global, |w|) over ``model_name``'s prunable weights and measure the
    extra peak memory of each call; meant to run in a fresh process (see :func:`bench_selection`)."""
    device = torch.device(device_name)
    torch.manual_seed(0)
    model = models.build(model_name, num_classes=10, in_channels=3, width=1.0).to(device)
    masks = MaskSet(model)
    n = masks.num_prunable
    weight_bytes = sum(w.numel() * w.element_size() for w in masks.weights)
    method = "cuda max_memory_allocated" if device.type == "cuda" else "VmHWM after clear_refs (fresh process)"
    times, extras, exact = [], [], True
    sparsities = [0.5 + 0.4 * i / max(1, repeats) for i in range(repeats + 1)]  # the first call is cold
    for s in sparsities:
        scores = magnitude(masks.weights)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else:
            if not _reset_peak_rss():
                method = "ru_maxrss delta (fresh process; a lower bound)"
            base = _rss_bytes()
        sync(device)
        start = time.perf_counter()
        masks.prune_to(scores, s)
        sync(device)
        times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _peak_bytes()
        extras.append(max(0, peak - base))
        exact &= masks.num_zeros() == pruned_count(s, n)
        del scores
    steady = times[1:] or times
    return {
        "model": model_name, "device": device.type, "num_prunable": n, "weight_bytes": weight_bytes,
        "sparsities": sparsities, "seconds": times, "cold_s": times[0], "median_s": statistics.median(steady),
        "extra_peak_bytes": max(extras), "extra_x_weights": max(extras) / weight_bytes, "memory_method": method,
        "exact_count": bool(exact),
    }


def bench_selection(model_names: tuple[str, ...], settings: Settings, in_process: bool = False) -> list[dict[str, Any]]:
    """Each model in a fresh ``python -m repro.bench --selection-worker`` so that peak memory is its own."""
    out = []
    for name in model_names:
        if in_process:
            result = selection_worker(name, settings.device, settings.selection_repeats)
        else:
            cmd = [sys.executable, "-m", "repro.bench", "--selection-worker", name, "--device", settings.device,
                   "--selection-repeats", str(settings.selection_repeats), "--threads", str(torch.get_num_threads())]
            cmd += [] if runtime.applied() else ["--no-reuse-memory"]  # the worker runs as this process does
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
            if proc.returncode != 0:
                raise RuntimeError(f"selection worker for {name} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        # the time target is stated for 20M weights; selection is O(N), so smaller models get a pro-rata budget
        result["target_seconds"] = TARGETS["selection seconds (20M weights)"] * result["num_prunable"] / 20e6
        result["target_extra_x"] = TARGETS["selection extra memory / weights"]
        result["pass_time"] = result["median_s"] < result["target_seconds"]
        result["pass_memory"] = result["extra_x_weights"] <= result["target_extra_x"]
        out.append(result)
    return out


# ----------------------------------------------------------------------------- data loader


class _PILImages(torch.utils.data.Dataset):
    def __init__(self, images: list, labels: list[int], transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def bench_loader(split: Split, settings: Settings) -> dict[str, Any]:
    """batches/s: repro's Batches (augment=True) vs torchvision's DataLoader + standard transforms."""
    import torchvision.transforms as T
    from torchvision.transforms.functional import to_pil_image

    device = torch.device(settings.device)
    batch, nb = settings.loader_batch, settings.loader_batches
    n = batch * nb
    if n > len(split):
        raise ValueError(f"the loader benchmark needs {n} images, the split has {len(split)}")
    images, labels = split.images[:n], split.labels[:n]
    ours = Batches(Split(images.to(device), labels.to(device)), batch, Normalizer("cifar10", device), augment=True)
    state = {"epoch": 0}

    def run_ours() -> int:
        count = 0
        for _x, _y in ours.epoch(0, state["epoch"]):
            count += 1
        state["epoch"] += 1
        return count

    mean, std = STATS["cifar10"]
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    pil = _PILImages([to_pil_image(img) for img in images], labels.tolist(), transform)
    loaders = {w: torch.utils.data.DataLoader(pil, batch_size=batch, shuffle=True, num_workers=w, persistent_workers=w > 0,
                                              pin_memory=device.type == "cuda")
               for w in settings.loader_workers}

    def tv(w: int) -> Callable[[], int]:
        def run() -> int:
            count = 0
            for x, y in loaders[w]:
                if device.type != "cpu":
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                count += 1
            return count

        return run

    contenders = {"ours": run_ours, **{f"torchvision-w{w}": tv(w) for w in settings.loader_workers}}
    runs = interleave(contenders, settings.repeats, settings.warmup, device)
    loaders.clear()  # persistent workers exit with their loaders
    gc.collect()
    rates = {name: r["rate"] for name, r in runs.items()}
    ratios = {f"ours/{k}": paired(rates["ours"], rates[k]) for k in rates if k != "ours"}
    best_peer = max((k for k in rates if k != "ours"), key=lambda k: statistics.median(rates[k]))
    check = {**ratios[f"ours/{best_peer}"], "peer": best_peer, "target": TARGETS["loader ours/torchvision"]}
    check["pass"] = check["median"] >= check["target"]
    return {
        "batch": batch, "batches_per_measurement": nb, "images": n, "device": device.type,
        "transforms": "RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(cifar10 mean, std)",
        "torchvision_source": "list of PIL images in memory, shuffle=True, persistent_workers when num_workers > 0",
        "contenders": {name: {"batches_per_s": summary(r["rate"]), "seconds": r["seconds"]} for name, r in runs.items()},
        "ratios": ratios,
        "check": check,
    }


# ----------------------------------------------------------------------------- facts and reports


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git() -> dict[str, str]:
    """The checkout's commit and dirty flag, as runs record them (``repro.tracking.git_info``)."""
    info = git_info()
    return {"commit": info["git_commit"], "dirty": info["git_dirty"]}


def machine_info(device: torch.device) -> dict[str, Any]:
    import torchvision

    info: dict[str, Any] = {
        "platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target as one row: name, value, op, target, pass."""
    rows = []
    for t in result.get("training", []):
        for name, r in t["ratios"].items():
            if "target" not in r:
                continue  # informational ratios
            rows.append({"check": f"{name} {t['key']}", "value": r["median"], "op": ">=", "target": r["target"],
                         "pass": r["pass"]})
    for s in result.get("selection", []):
        rows.append({"check": f"selection seconds {s['model']} ({s['num_prunable'] / 1e6:.1f}M; 1 s per 20M)",
                     "value": s["median_s"], "op": "<", "target": s["target_seconds"], "pass": s["pass_time"]})
        rows.append({"check": f"selection extra mem / weights {s['model']}", "value": s["extra_x_weights"], "op": "<=",
                     "target": s["target_extra_x"], "pass": s["pass_memory"]})
    if "loader" in result:
        c = result["loader"]["check"]
        rows.append({"check": f"loader ours/{c['peer']} (best torchvision)", "value": c["median"], "op": ">=",
                     "target": c["target"], "pass": c["pass"]})
    return rows


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["settings"]
    lines = [
        f"# repro bench: {result['device']}, {result['date']}",
        "",
        f"machine: {m['cpu_model']}, {m['cpus_usable']} usable CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"{m['platform']}" + (f", GPU {m['gpu']}" if "gpu" in m else ""),
        f"git: {result['git']['commit'][:12]} (dirty: {result['git']['dirty']}); load average at start/end: "
        f"{_fmt_load(m.get('loadavg_start'))} / {_fmt_load(m.get('loadavg_end'))} "
        "(a busy machine makes every number here noisy)",
        f"settings: {s['repeats']} interleaved repeats after {s['warmup']} warm-up round(s); precision {s['precision']}; "
        f"PMP update every {s['update_frequency']} iterations, linear 0 -> {s['final_sparsity']} over the whole run; "
        "ratios are medians of per-round paired ratios; glibc malloc tuned for reuse (repro.runtime): "
        f"{result.get('malloc_reuse', 'not recorded')}",
        "",
    ]
    if result.get("training"):
        names = ("dense", "pmp", "hooks", "bare", "dense-torchsgd")
        ratio_names = ("pmp/dense", "dense/bare", "pmp/hooks", "dense/dense-torchsgd")
        lines += ["## training throughput (images/s, median)", "",
                  "| spec | steps | dense | pmp | hooks (peer) | bare | dense, torch SGD | " + " | ".join(ratio_names) + " |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for t in result["training"]:
            c, r = t["contenders"], t["ratios"]
            lines.append(f"| {t['key']} | {t['steps']} | " + " | ".join(
                f"{c[k]['images_per_s']['median']:.0f}" for k in names) + " | " + " | ".join(
                f"{r[k]['median']:.3f} ({r[k]['q1']:.2f}-{r[k]['q3']:.2f})" for k in ratio_names)
                + " |")
        lines += ["", "ratios: median (interquartile range) of the per-round paired ratios. The suite's loops step "
                  "repro.optim.MaskedSGD; hooks and bare step torch.optim.SGD; 'dense, torch SGD' is the suite's "
                  "loop stepping torch.optim.SGD (dense/dense-torchsgd: what the suite's SGD alone is worth, no target)",
                  "",
                  "minor page faults per measurement (median): " + "; ".join(
                      t["key"] + " " + ", ".join(f"{k} {statistics.median(t['contenders'][k]['minor_faults']):.0f}"
                                                for k in t["contenders"]) for t in result["training"]), ""]
    if result.get("selection"):
        lines += ["## global mask selection (MaskSet.prune_to, fresh process per model)", "",
                  "| model | prunable | cold s | median s | extra peak MiB | extra / weights | exact count | memory by |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for x in result["selection"]:
            lines.append(f"| {x['model']} | {x['num_prunable']:,} | {x['cold_s']:.3f} | {x['median_s']:.3f} | "
                         f"{x['extra_peak_bytes'] / 2**20:.0f} | {x['extra_x_weights']:.2f}x | {x['exact_count']} | "
                         f"{x['memory_method']} |")
        lines.append("")
    if result.get("loader"):
        ld = result["loader"]
        lines += [f"## data loader (batches/s of {ld['batch']}, median; CIFAR-10, augment)", "",
                  "| contender | batches/s |", "| --- | ---: |"]
        for name, c in ld["contenders"].items():
            lines.append(f"| {name} | {c['batches_per_s']['median']:.1f} |")
        lines.append("")
    lines += ["## checks", "", "| check | value | target | result |", "| --- | ---: | ---: | --- |"]
    for row in result["checks"]:
        lines.append(f"| {row['check']} | {row['value']:.3f} | {row['op']} {row['target']:.3g} | "
                     f"{'PASS' if row['pass'] else 'MISS'} |")
    lines += ["", f"all targets met: {result['all_pass']}"]
    return "\n".join(lines) + "\n"


def _fmt_load(load: list[float] | None) -> str:
    return "n/a" if not load else "/".join(f"{x:.2f}" for x in load)


def write(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``<device>-<date>.json`` (everything) and ``latest.md`` (the table) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("-", "")[:15]
    path = out_dir / f"{result['device']}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    md = out_dir / "latest.md"
    md.write_text(render(result) + f"\nfull numbers: `{path.name}`\n")
    return path, md


# ----------------------------------------------------------------------------- the run


def load_data(name: str, root: str | Path, cache_dir: str | Path) -> Dataset:
    from repro.data import load

    return load(name, root, cache_dir=cache_dir, download=False)


def run(settings: Settings, *, specs: tuple[TrainSpec, ...], selection_models: tuple[str, ...], loader: bool,
        datasets: dict[str, Dataset] | None = None, data_root: str | Path = "", cache_dir: str | Path = ".cache/repro",
        selection_in_process: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """All requested parts; returns the JSON-able result (not yet written)."""
    device = torch.device(settings.device)
    datasets = dict(datasets or {})

    def data(name: str) -> Dataset:
        if name not in datasets:
            log(f"loading {name} from {data_root}")
            datasets[name] = load_data(name, data_root, cache_dir)
        return datasets[name]

    result: dict[str, Any] = {
        "schema": SCHEMA, "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "device": device.type,
        "machine": machine_info(device), "git": _git(), "settings": asdict(settings),
        "targets": TARGETS, "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "malloc_reuse": runtime.applied(),
        "optimizers": {"dense, pmp": "repro.optim.MaskedSGD", "hooks, bare, dense-torchsgd": "torch.optim.SGD"},
    }
    started = time.perf_counter()
    load, cpus = result["machine"]["loadavg_start"], result["machine"]["cpus_usable"] or 1
    if load and load[0] > 0.25 * cpus:
        log(f"warning: load average {load[0]:.2f} on {cpus} CPUs before starting: timings will be noisy")
    if specs:
        result["training"] = []
        for spec in specs:
            log(f"training: {spec.key} ({spec.steps} steps x batch {spec.batch} per measurement)")
            t = bench_training(spec, data(spec.dataset), settings)
            r = t["ratios"]
            log(f"  pmp/dense {r['pmp/dense']['median']:.3f}  dense/bare {r['dense/bare']['median']:.3f}  "
                f"pmp/hooks {r['pmp/hooks']['median']:.3f}")
            result["training"].append(t)
    if selection_models:
        log(f"selection: {', '.join(selection_models)}")
        result["selection"] = bench_selection(selection_models, settings, in_process=selection_in_process)
    if loader:
        log("loader: repro Batches vs torchvision DataLoader")
        result["loader"] = bench_loader(data("cifar10").train, settings)
    result["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["wall_seconds"] = time.perf_counter() - started
    result["checks"] = checks(result)
    result["all_pass"] = all(row["pass"] for row in result["checks"])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m repro.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu: the targets are CPU targets)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved measured rounds (default 11; --quick 2)")
    p.add_argument("--warmup", type=int, default=1, help="discarded rounds before measuring")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats: a smoke run, not a measurement")
    p.add_argument("--only", default="training,selection,loader", help="comma-separated parts to run")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default: all cores)")
    p.add_argument("--data-root", default=os.environ.get("REPRO_DATA_DIR", str(PROJECT_ROOT.parent / "shared" / "data")))
    p.add_argument("--cache-dir", default=os.environ.get("REPRO_CACHE_DIR", str(PROJECT_ROOT / ".cache" / "repro")))
    p.add_argument("--out", default=str(PROJECT_ROOT / "results" / "bench"), help="where the JSON and latest.md go")
    p.add_argument("--no-write", action="store_true", help="print only")
    p.add_argument("--no-reuse-memory", action="store_true",
                   help="leave glibc malloc's defaults (repro-train's trainer.reuse_memory=false) to measure their cost")
    p.add_argument("--selection-worker", metavar="MODEL", help=argparse.SUPPRESS)
    p.add_argument("--selection-repeats", type=int, default=None, help="prune_to calls per model after the cold one")
    args = p.parse_args(argv)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_reuse_memory:
        runtime.keep_freed_memory()  # as repro-train does (trainer.reuse_memory); every contender shares the process
    if args.selection_worker:
        print(json.dumps(selection_worker(args.selection_worker, device, args.selection_repeats or 5)))
        return 0
    if device == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)  # as repro-train does on CPU
    settings = Settings(device=device, repeats=args.repeats or (2 if args.quick else Settings.repeats), warmup=args.warmup,
                        precision=args.precision)
    tf32 = runtime.use_precision(settings.precision)  # as repro-train does: fp32 means no TF32 convolutions
    if args.selection_repeats:
        settings.selection_repeats = args.selection_repeats
    elif args.quick:
        settings.selection_repeats = 2
    if args.quick:
        settings.loader_batches = 20
    parts = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = parts - {"training", "selection", "loader"}
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}: choose training, selection, loader")
    result = run(settings, specs=(QUICK_SPECS if args.quick else FULL_SPECS) if "training" in parts else (),
                 selection_models=SELECTION_MODELS if "selection" in parts else (), loader="loader" in parts,
                 data_root=args.data_root, cache_dir=args.cache_dir, log=lambda msg: print(msg, flush=True))
    result["settings"]["quick"] = args.quick
    result["settings"]["tf32"] = tf32
    print()
    print(render(result))
    if not args.no_write:
        path, md = write(result, Path(args.out))
        print(f"wrote {path} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
