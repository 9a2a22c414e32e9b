"""One benchmark run: every requested part (training, selection, epoch time, loader) in order,
into one JSON-able result with the machine, the checkout, the settings and the checks. The entry
point that the command line and the GPU check call; the parts themselves live in their modules."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from repro import runtime
from repro.data import Dataset

from .loader import bench_loader
from .machine import git_state, machine_info
from .report import checks
from .selection import bench_selection
from .specs import EPOCH_SPEC, SCHEMA, TARGETS, Settings, TrainSpec, Variant
from .training import bench_epoch, bench_training


def load_data(name: str, root: str | Path, cache_dir: str | Path) -> Dataset:
    from repro.data import load

    return load(name, root, cache_dir=cache_dir, download=False)


def run(settings: Settings, *, specs: tuple[TrainSpec, ...], selection_models: tuple[str, ...], loader: bool,
        variants: tuple[Variant, ...] = (), epoch_spec: TrainSpec = EPOCH_SPEC, datasets: dict[str, Dataset] | None = None,
        data_root: str | Path = "", cache_dir: str | Path = ".cache/repro",
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
        "machine": machine_info(device), "git": git_state(), "settings": asdict(settings),
        "targets": TARGETS, "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "malloc_reuse": runtime.applied(),
        "optimizers": {"dense, pmp": "repro.optim.MaskedSGD", "hooks, bare, dense-torchsgd": "torch.optim.SGD",
                       "pmp-adam": "torch.optim.Adam (fused on CPU)", "pmp-adam-pertensor": "torch.optim.Adam (per-tensor)"},
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
    if variants:
        result["epoch"] = []
        for variant in variants:
            log(f"epoch time: {epoch_spec.key} {variant.key} ({epoch_spec.steps} steps x batch {epoch_spec.batch})")
            e = bench_epoch(epoch_spec, data(epoch_spec.dataset), settings, variant)
            log(f"  dense {e['contenders']['dense']['epoch_s']:.2f} s  pmp {e['contenders']['pmp']['epoch_s']:.2f} s per epoch")
            result["epoch"].append(e)
    if loader:
        log("loader: repro Batches vs torchvision DataLoader")
        result["loader"] = bench_loader(data("cifar10").train, settings)
    result["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result["wall_seconds"] = time.perf_counter() - started
    result["checks"] = checks(result)
    result["all_pass"] = all(row["pass"] for row in result["checks"])
    return result
