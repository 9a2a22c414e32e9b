"""The command line of ``make gpu-check`` / ``python tools/gpu_check.py``: options and the mode's
defaults, then the phases in their order (environment, data, checks, bench, training), each capped
so that training keeps its minimum; or ``--pack``. The exit status says whether the check passed."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __doc__ as OVERVIEW
from .bench_part import bench_phase
from .checks import correctness
from .common import ROOT, STATE_ROOT
from .environment import environment, load_data, provenance
from .outputs import document
from .pack import pack
from .phases import Run
from .profiles import DRY, GPU, Profile
from .training import training


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Profile]:
    p = argparse.ArgumentParser(prog="python tools/gpu_check.py", description=OVERVIEW.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry", action="store_true", help="the same on the CPU at tiny sizes (about a minute)")
    p.add_argument("--pack", action="store_true", help="make gpu-pack: wheels + CIFAR copy into .gpu-carry/, then exit")
    p.add_argument("--out", default=None, help="output folder (default $OUT, else results/gpu/; dry: .cache/gpu-check/dry-out/)")
    p.add_argument("--state-dir", default=None, help="state, checkpoints, logs (default .cache/gpu-check/<mode>/)")
    p.add_argument("--data-root", default=None, help="folder holding cifar10-jpeg/ (default .gpu-carry/data, $REPRO_DATA_DIR)")
    p.add_argument("--budget", type=float, default=None, help="wall seconds for this call (gpu 540, dry 150)")
    p.add_argument("--cap-env", type=float, default=None, help="cap of the environment phase, s")
    p.add_argument("--cap-data", type=float, default=None, help="cap of decoding CIFAR-10, s")
    p.add_argument("--cap-checks", type=float, default=None, help="cap of the correctness checks, s")
    p.add_argument("--cap-bench", type=float, default=None, help="cap of the bench, s")
    p.add_argument("--min-train", type=float, default=None, help="seconds kept for training when capping earlier phases")
    p.add_argument("--reserve", type=float, default=10.0, help="seconds kept at the end for writing results")
    p.add_argument("--epochs", type=int, default=0, help="epochs per training run (0: from the measured epoch time)")
    p.add_argument("--redo", default="", help="comma-separated phases to run again (checks, bench, train)")
    p.add_argument("--fresh", action="store_true", help="forget the state of earlier calls (checkpoints too)")
    args = p.parse_args(argv)
    profile = DRY if args.dry else GPU
    args.budget = args.budget if args.budget is not None else profile.budget
    for arg, key in (("cap_env", "environment"), ("cap_data", "data"), ("cap_checks", "checks"), ("cap_bench", "bench")):
        if getattr(args, arg) is None:
            setattr(args, arg, profile.caps[key])
    args.min_train = args.min_train if args.min_train is not None else profile.min_train
    args.redo = {x.strip() for x in args.redo.split(",") if x.strip()}
    return args, profile


def main(argv: list[str] | None = None) -> int:
    args, profile = parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the device has the checkout, not an installed repro
    if args.pack:
        return pack(Path(args.data_root or os.environ.get("REPRO_DATA_DIR") or ROOT.parent / "shared" / "data"))
    if profile.device == "cuda":
        # before CUDA starts: cuBLAS reads it at handle creation (the resume check runs deterministically)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    out = Path(args.out or os.environ.get("OUT") or (STATE_ROOT / "dry-out" if args.dry else ROOT / "results" / "gpu"))
    state_dir = Path(args.state_dir) if args.state_dir else STATE_ROOT / profile.name
    run = Run(profile, args, out.resolve(), state_dir.resolve())
    run.load()
    run.state["provenance"] = provenance()
    run.log(f"mode {profile.name}, budget {args.budget:.0f} s, out {run.out}, state {run.state_dir}")
    from repro import runtime

    runtime.keep_freed_memory()  # as repro-train does by default
    run.phase("environment", args.cap_env, lambda r: environment(run, r), rerun=True)
    if run.state["phases"]["environment"]["status"] != "done":
        run.log("environment failed: nothing else can run")
        return 2
    before_train = run.args.min_train
    run.phase("data", args.cap_data, lambda r: load_data(run, r), rerun=True)
    run.phase("checks", min(args.cap_checks, run.remaining() - before_train), lambda r: correctness(run, r))
    run.phase("bench", min(args.cap_bench, run.remaining() - before_train), lambda r: bench_phase(run, r))
    run.phase("train", run.remaining(), lambda r: training(run, r), rerun=True, keep_result=True, alarm=False)
    doc = document(run)
    run.log(f"wrote {run.out}: status {doc['status']}, correctness passed: {doc['checks_passed']}, "
            f"{run.elapsed():.0f} s")
    return 0 if doc["checks_passed"] and doc["status"] == "complete" else 1
