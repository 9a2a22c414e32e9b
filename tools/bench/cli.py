"""The command line of ``make bench`` / ``python tools/bench.py``: options to settings, the
process-wide setup (threads, malloc reuse, deterministic algorithms, TF32), the hidden
``--selection-worker`` mode, then :func:`bench.runner.run`, the table and the files. Apart so that
the parts can be called (by tests, by the GPU check) without parsing arguments."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import torch

from repro import runtime
from repro.tracking import PROJECT_ROOT

from . import __doc__ as OVERVIEW
from .report import render, write
from .runner import run
from .selection import selection_worker
from .specs import FULL_SPECS, QUICK_SPECS, SELECTION_MODELS, Settings, Variant
from .sweep import QUICK, SweepSpec, bench_sweep, sweep_worker
from .sweep import render as render_sweep
from .sweep import write as write_sweep


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--sweep-worker"]:  # hidden: one job of the sweep part, THREADS -- OVERRIDES...
        print(json.dumps(sweep_worker(int(argv[1]), argv[3:])))
        return 0
    p = argparse.ArgumentParser(prog="python tools/bench.py", description=OVERVIEW.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu: the targets are CPU targets)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved measured rounds (default 11; --quick 2)")
    p.add_argument("--warmup", type=int, default=1, help="discarded rounds before measuring")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats: a smoke run, not a measurement")
    p.add_argument("--only", default="training,selection,loader",
                   help="comma-separated parts to run: training, selection, loader, epoch (a GPU part: ResNet-18 epochs)")
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
    p.add_argument("--variants", default="bf16-cl,bf16-cl-compile",
                   help="epoch part: PRECISION[-cl][-compile], comma-separated (cl = channels_last)")
    p.add_argument("--sweep", action="store_true",
                   help="only the sweep-throughput part: jobs one by one vs side by side (auto threads, oversubscribed)")
    p.add_argument("--sweep-jobs", type=int, default=SweepSpec.jobs, help="jobs side by side in --sweep (default 2)")
    p.add_argument("--sparse", action="store_true",
                   help="only the sparse-kernel part: dense vs CSR layers at 50-99%% sparsity, crossover per shape")
    args = p.parse_args(argv)
    if args.sweep:
        return _sweep(args)
    if args.sparse:
        return _sparse(args)

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
    unknown = parts - {"training", "selection", "loader", "epoch"}
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}: choose training, selection, loader, epoch")
    try:
        variants = tuple(Variant.parse(v) for v in args.variants.split(",") if v.strip()) if "epoch" in parts else ()
    except ValueError as exc:
        p.error(str(exc))
    result = run(settings, specs=(QUICK_SPECS if args.quick else FULL_SPECS) if "training" in parts else (),
                 selection_models=SELECTION_MODELS if "selection" in parts else (), loader="loader" in parts,
                 variants=variants, data_root=args.data_root, cache_dir=args.cache_dir, log=lambda msg: print(msg, flush=True))
    result["settings"]["quick"] = args.quick
    result["settings"]["tf32"] = tf32
    print()
    print(render(result))
    if not args.no_write:
        path, md = write(result, Path(args.out))
        print(f"wrote {path} and {md}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """The sweep-throughput part alone (it runs whole training processes; see bench.sweep)."""
    spec = dataclasses.replace(QUICK if args.quick else SweepSpec(), jobs=args.sweep_jobs)
    if args.repeats:
        spec = dataclasses.replace(spec, rounds=args.repeats)
    result = bench_sweep(spec, log=lambda msg: print(msg, flush=True))
    result["quick"] = args.quick
    print()
    print(render_sweep(result))
    if not args.no_write:
        path, md = write_sweep(result, Path(args.out))
        print(f"wrote {path} and {md}")
    return 0


def _sparse(args: argparse.Namespace) -> int:
    """The sparse-kernel part alone (see bench.sparse); threads as --threads says, else torch's default."""
    from . import sparse

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = sparse.QUICK if args.quick else sparse.SparseSpec()
    if args.repeats:
        spec = dataclasses.replace(spec, repeats=args.repeats)
    result = sparse.bench_sparse(spec, log=lambda msg: print(msg, flush=True))
    result["quick"] = args.quick
    print()
    print(sparse.render(result))
    if not args.no_write:
        path, md = sparse.write(result, Path(args.out))
        print(f"wrote {path} and {md}")
    return 0
