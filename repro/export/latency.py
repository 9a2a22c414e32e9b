"""CPU inference time, dense against sparse: batch-1 latency and batch-256 throughput.

Both models are timed in one process, interleaved (dense, sparse, then sparse, dense, ...) so
that drift on a shared machine hits both alike; each figure is a median over rounds and the
ratio is the median of the per-round ratios (paired). The thread count is part of the result:
sparse and dense kernels scale differently with threads. No test asserts a timing.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn

#: each timed window runs the model this many times at batch 1 (one call is ~10-100 us: too
#: short to time alone), once at larger batches
CALLS_AT_BATCH_1 = 20


def _window(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call over ``calls`` calls, no GC pause inside."""
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    finally:
        gc.enable()


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int, warmup: int, calls: int) -> dict[str, list[float]]:
    """Seconds per call of each contender per round; the order flips every other round."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            _window(contenders[name], calls)
    out: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            out[name].append(_window(contenders[name], calls))
    return out


def compare(dense: Callable[[], Any], sparse: Callable[[], Any], batch: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Median seconds per call of both, their paired ratio dense/sparse (> 1: sparse is faster), images/s."""
    calls = CALLS_AT_BATCH_1 if batch == 1 else 1
    times = interleaved({"dense": dense, "sparse": sparse}, repeats, warmup, calls)
    ratio = statistics.median(d / s for d, s in zip(times["dense"], times["sparse"], strict=True))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": batch, "dense_s": med["dense"], "sparse_s": med["sparse"], "speedup": ratio,
            "dense_images_per_s": batch / med["dense"], "sparse_images_per_s": batch / med["sparse"],
            "rounds": repeats, "calls_per_window": calls}


@torch.inference_mode()
def measure_latency(dense: nn.Module, sparse: nn.Module, input_shape: Sequence[int], batches: Sequence[int] = (1, 256),
                    repeats: int = 21, warmup: int = 3) -> dict[str, Any]:
    """Dense vs sparse forward time on random inputs of ``(batch, *input_shape[1:])``, per batch size."""
    dense, sparse = dense.eval(), sparse.eval()
    results = []
    for batch in batches:
        x = torch.randn(batch, *input_shape[1:], generator=torch.Generator().manual_seed(0))
        results.append(compare(lambda x=x: dense(x), lambda x=x: sparse(x), batch, repeats, warmup))
    return {"threads": torch.get_num_threads(), "torch": torch.__version__, "repeats": repeats, "warmup": warmup,
            "results": results}
