"""Part 4 of the benchmark: exact global mask selection (``MaskSet.prune_to``) over a model's
prunable weights, its time and its extra peak memory. Each model runs in a fresh process
(``python tools/bench.py --selection-worker MODEL``, by file path) so that the peak resident set is
its own; the worker and the /proc bookkeeping live here, apart from the in-process parts."""

from __future__ import annotations

import ctypes
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from repro import models, runtime
from repro.pruning.masks import MaskSet, pruned_count
from repro.pruning.scores import magnitude
from repro.tracking import PROJECT_ROOT

from .specs import TARGETS, Settings
from .timing import sync

#: the script the worker runs as: ``tools/bench.py`` (its ``--selection-worker`` option)
SCRIPT = Path(__file__).resolve().parent.parent / "bench.py"


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
    """Each model in a fresh ``python tools/bench.py --selection-worker`` so that peak memory is its own."""
    out = []
    for name in model_names:
        if in_process:
            result = selection_worker(name, settings.device, settings.selection_repeats)
        else:
            cmd = [sys.executable, str(SCRIPT), "--selection-worker", name, "--device", settings.device,
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
