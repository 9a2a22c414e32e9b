"""Parts 1-3 and 6 of the benchmark: training throughput of the suite's loop against the bare
loop and the prune-hooks peer (paired ratios and their targets), and the epoch time of the suite's
loop under a precision / ``channels_last`` / ``torch.compile`` variant (the GPU part). Both build
the same model and schedule and interleave the contenders of :mod:`bench.loops`."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import torch

from repro import models, runtime
from repro.config import OptimConfig, PrunerConfig, ScheduleConfig
from repro.data import Dataset, Split
from repro.engine import initialize
from repro.pruning.methods import Dense, GradualMagnitude, Method

from .loops import BareLoop, PruneHooksPMP, SuiteLoop, TorchAdamEngine, TorchSGDEngine
from .specs import CIFAR10_TRAIN_IMAGES, TARGETS, Settings, TrainSpec, Variant
from .timing import interleave, paired, summary

#: the Adam contenders' optimizer (LTH's LeNet recipe)
ADAM = OptimConfig(name="adam", lr=1.2e-3, weight_decay=0.0)


def _subset(dataset: Dataset, n: int, test: int) -> Dataset:
    if n > len(dataset.train):
        raise ValueError(f"{dataset.name} has {len(dataset.train)} training images, the spec needs {n}")
    train = Split(dataset.train.images[:n], dataset.train.labels[:n])
    return Dataset(dataset.name, dataset.source, train, Split(dataset.test.images[:test], dataset.test.labels[:test]))


def _setup(spec: TrainSpec, dataset: Dataset, s: Settings) -> tuple[Dataset, int, Any, Method, Method]:
    """What every training measurement starts from: the data of ``spec.steps`` batches, the epochs
    (warm-up + repeats), one initialised network to copy, and the PMP and dense methods."""
    if spec.steps % s.update_frequency:
        raise ValueError(f"{spec.key}: steps ({spec.steps}) must be a multiple of update_frequency so that "
                         "every measurement holds the same number of mask updates")
    data = _subset(dataset, spec.steps * spec.batch, spec.batch)
    torch.manual_seed(0)
    base = models.build(spec.model, num_classes=10, in_channels=dataset.in_channels, width=spec.width)
    initialize(base, "kaiming_normal")
    schedule = ScheduleConfig(name="linear", initial_sparsity=0.0, start=0.0, end=1.0,
                              update_frequency=s.update_frequency, update_unit="iterations")
    pmp = GradualMagnitude(PrunerConfig(name="pmp", scope="global"), s.final_sparsity, schedule)
    dense = Dense(PrunerConfig(name="dense"), 0.0, schedule)
    return data, s.warmup + s.repeats, base, pmp, dense


def bench_training(spec: TrainSpec, dataset: Dataset, settings: Settings) -> dict[str, Any]:
    """Interleave dense, pmp (suite), hooks (peer) and bare on one spec; rates and paired ratios."""
    device = torch.device(settings.device)
    data, epochs, base, pmp, dense = _setup(spec, dataset, settings)
    contenders: dict[str, Callable[[], int]] = {
        "dense": SuiteLoop(dense, copy.deepcopy(base), data, spec.batch, epochs, device, settings),
        "dense-torchsgd": SuiteLoop(dense, copy.deepcopy(base), data, spec.batch, epochs, device, settings,
                                    engine=TorchSGDEngine),
        "pmp": SuiteLoop(pmp, copy.deepcopy(base), data, spec.batch, epochs, device, settings),
        # PMP under Adam (LTH's LeNet recipe: lr 1.2e-3): the suite's kernel choice against torch's per-tensor one
        "pmp-adam": SuiteLoop(copy.deepcopy(pmp), copy.deepcopy(base), data, spec.batch, epochs, device, settings,
                              optim=ADAM),
        "pmp-adam-pertensor": SuiteLoop(copy.deepcopy(pmp), copy.deepcopy(base), data, spec.batch, epochs, device,
                                        settings, engine=TorchAdamEngine, optim=ADAM),
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
    ratios["adam: fused/per-tensor"] = paired(rates["pmp-adam"], rates["pmp-adam-pertensor"])
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


def bench_epoch(spec: TrainSpec, dataset: Dataset, settings: Settings, variant: Variant,
                epoch_images: int = CIFAR10_TRAIN_IMAGES) -> dict[str, Any]:
    """Epoch time of the suite's loop, dense and PMP interleaved, under one variant, with augmentation.

    One measurement is ``spec.steps`` batches; the epoch time is ``epoch_images`` over the median
    images/s (evaluation not included). The warm-up round absorbs ``torch.compile``'s first
    compilation; its cost is reported as ``warmup_s`` (wall time of the variant minus the
    measured windows)."""
    device = torch.device(settings.device)
    s = replace(settings, precision=variant.precision, channels_last=variant.channels_last, compile=variant.compile,
                augment=True)
    tf32 = runtime.use_precision(s.precision)
    data, epochs, base, pmp, dense = _setup(spec, dataset, s)
    started = time.perf_counter()
    contenders: dict[str, Callable[[], int]] = {
        "dense": SuiteLoop(dense, copy.deepcopy(base), data, spec.batch, epochs, device, s),
        "pmp": SuiteLoop(pmp, copy.deepcopy(base), data, spec.batch, epochs, device, s),
    }
    runs = interleave(contenders, s.repeats, s.warmup, device)
    wall = time.perf_counter() - started
    measured = sum(sum(r["seconds"]) for r in runs.values())
    out: dict[str, Any] = {
        **asdict(spec), "variant": variant.key, **asdict(variant), "tf32": tf32, "device": device.type,
        "images_per_measurement": spec.steps * spec.batch, "epoch_images": epoch_images,
        "mask_updates_per_measurement": spec.steps // s.update_frequency,
        "final_sparsity_pmp": contenders["pmp"].engine.masks.sparsity(),
        "wall_s": wall, "warmup_s": wall - measured, "contenders": {},
        "ratios": {"pmp/dense": paired(runs["pmp"]["rate"], runs["dense"]["rate"])},
    }
    for name, r in runs.items():
        rate = summary(r["rate"])
        out["contenders"][name] = {"images_per_s": rate, "epoch_s": epoch_images / rate["median"], "seconds": r["seconds"]}
    return out
