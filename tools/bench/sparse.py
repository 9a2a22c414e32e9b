"""``python tools/bench.py --sparse``: from which sparsity does a CSR kernel beat the dense layer?

Fixed synthetic random masks (exact count of zeros, seeded) at 50, 70, 90, 95, 98 and 99% on
LeNet-300-100's Linear shapes (784x300, 300x100) and one VGG conv shape (3x3, 256->256 on 8x8).
Per shape, sparsity and batch (1: latency, 256: throughput) the dense layer (``nn.Linear`` /
``nn.Conv2d`` holding the zeros) and its sparse-kernel twin (:mod:`repro.export.kernels`) are
timed in one process, interleaved (dense, sparse, then sparse, dense, ...), medians over rounds,
ratio = median of per-round dense/sparse ratios; threads are recorded with the result.

The crossover sparsity of a shape at a batch size is the lowest measured sparsity from which the
sparse kernel is faster at that one and every higher measured sparsity (None: never).

Results: ``results/bench/sparse-<date>.json`` and ``results/bench/sparse-latest.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repro.export.kernels import SparseConv2d, SparseLinear
from repro.export.latency import compare
from repro.pruning.masks import pruned_count

from .machine import git_state, machine_info
from .report import write_files

SPARSITIES = (0.5, 0.7, 0.9, 0.95, 0.98, 0.99)


@dataclasses.dataclass(frozen=True)
class Shape:
    """One layer: Linear (in -> out) or a 3x3-style Conv2d (in -> out channels on hw x hw, padding k//2)."""

    name: str
    kind: str  # linear | conv
    out: int
    inp: int
    kernel: int = 1
    hw: int = 0

    def layer(self) -> nn.Module:
        if self.kind == "linear":
            return nn.Linear(self.inp, self.out)
        return nn.Conv2d(self.inp, self.out, self.kernel, padding=self.kernel // 2, bias=False)

    def input(self, batch: int) -> torch.Tensor:
        shape = (batch, self.inp) if self.kind == "linear" else (batch, self.inp, self.hw, self.hw)
        return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


@dataclasses.dataclass(frozen=True)
class SparseSpec:
    shapes: tuple[Shape, ...] = (Shape("LeNet-300-100 fc1 784x300", "linear", 300, 784),
                                 Shape("LeNet-300-100 fc2 300x100", "linear", 100, 300),
                                 Shape("VGG conv 3x3 256->256 @8x8", "conv", 256, 256, 3, 8))
    sparsities: tuple[float, ...] = SPARSITIES
    batches: tuple[int, ...] = (1, 256)
    repeats: int = 11
    warmup: int = 2


#: a smoke run at tiny sizes: proves the code runs, measures nothing
QUICK = SparseSpec(shapes=(Shape("tiny linear 64x32", "linear", 32, 64), Shape("tiny conv 3x3 8->8 @4x4", "conv", 8, 8, 3, 4)),
                   sparsities=(0.5, 0.9, 0.99), batches=(1, 4), repeats=2, warmup=1)


def pair(shape: Shape, sparsity: float, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """The dense layer with exactly pruned_count(sparsity, n) weights zeroed at random, and its CSR twin."""
    torch.manual_seed(seed)
    dense = shape.layer().eval()
    with torch.no_grad():
        flat = dense.weight.view(-1)
        flat[torch.randperm(flat.numel())[: pruned_count(sparsity, flat.numel())]] = 0.0
    sparse = SparseLinear(dense) if shape.kind == "linear" else SparseConv2d(dense)
    return dense, sparse


@torch.inference_mode()
def measure(shape: Shape, sparsity: float, spec: SparseSpec) -> list[dict[str, Any]]:
    dense, sparse = pair(shape, sparsity)
    rows = []
    for batch in spec.batches:
        x = shape.input(batch)
        torch.testing.assert_close(sparse(x), dense(x), rtol=1e-4, atol=1e-4)  # a wrong kernel is not a fast one
        row = compare(lambda: dense(x), lambda: sparse(x), batch, spec.repeats, spec.warmup)  # noqa: B023 - called now
        rows.append({"shape": shape.name, "sparsity": sparsity, **row})
    return rows


def crossover(rows: Sequence[dict[str, Any]], shape: str, batch: int) -> float | None:
    """The lowest sparsity from which sparse beats dense at every higher measured sparsity too."""
    points = sorted((r["sparsity"], r["speedup"]) for r in rows if r["shape"] == shape and r["batch"] == batch)
    best = None
    for sparsity, speedup in reversed(points):
        if speedup <= 1.0:
            break
        best = sparsity
    return best


def bench_sparse(spec: SparseSpec, log: Callable[[str], None] = print) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for shape in spec.shapes:
        for sparsity in spec.sparsities:
            log(f"sparse: {shape.name} at {sparsity:.0%}")
            rows += measure(shape, sparsity, spec)
    return {"schema": "repro-bench-sparse/1", "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_info(torch.device("cpu")), "git": git_state(), "threads": torch.get_num_threads(),
            "spec": dataclasses.asdict(spec), "rows": rows,
            "crossover": {s.name: {str(b): crossover(rows, s.name, b) for b in spec.batches} for s in spec.shapes}}


def render(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["spec"]
    lines = [f"# repro bench: sparse kernels vs dense, {result['date']}", "",
             f"machine: {m['cpu_model']}; {result['threads']} torch thread(s); git {result['git']['commit'][:12]} "
             f"(dirty: {result['git']['dirty']}); {s['repeats']} interleaved round(s), medians; speedup = dense / sparse",
             *(["", "**--quick: a smoke run at tiny sizes, not a measurement**"] if result.get("quick") else []),
             "", "| layer | sparsity | batch | dense ms | sparse ms | speedup |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['shape']} | {r['sparsity']:.0%} | {r['batch']} | {r['dense_s'] * 1e3:.3f} | {r['sparse_s'] * 1e3:.3f} "
              f"| {r['speedup']:.2f} |" for r in result["rows"]]
    lines += ["", "| layer | " + " | ".join(f"crossover at batch {b}" for b in s["batches"]) + " |",
              "| --- |" + " ---: |" * len(s["batches"])]
    for shape, by_batch in result["crossover"].items():
        lines.append(f"| {shape} | " + " | ".join("never" if v is None else f"{v:.0%}" for v in by_batch.values()) + " |")
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``sparse-<date>.json`` and ``sparse-latest.md`` (apart from the main bench's latest.md)."""
    return write_files(result, out_dir, "sparse-", "sparse-latest.md", render(result))
