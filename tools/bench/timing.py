"""How every part of the benchmark times its contenders: one process, interleaved rounds (order
reversed every other round) after discarded warm-up rounds, no GC pause inside a window, minor page
faults counted; and the summaries (median, quartiles) and per-round paired ratios a target is
checked against. One module so that training, selection and loader measure the same way."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


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
