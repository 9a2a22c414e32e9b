"""Phase 3 of the GPU check: one PMP ResNet-18 run at 0.729 and its dense baseline through the real
entry point (``python -m repro.train``), with the epochs the budget allows, each under its own cap
and resumable from its checkpoints; and the parser of ``repro-train``'s log that their numbers come
from. Subprocesses, not in-process calls, so that what is checked is what a user runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from .bench_part import epoch_seconds
from .common import ROOT, now
from .environment import cache_dir, data_root
from .limits import epochs_allowed, run_cap, run_estimate
from .phases import CapReached

if TYPE_CHECKING:
    from .phases import Run


_METRIC = re.compile(r"([A-Za-z_][A-Za-z0-9_/]*)=([-+0-9.eE]+|nan|inf|-inf)")


def parse_train_log(text: str) -> dict[str, Any]:
    """Per-epoch metrics, the final metrics and resume points from ``repro-train``'s log
    (``cycle C | k=v, ...`` per epoch, ``final: k=v, ...`` at the end, ``resumed from ... epoch E``).
    Epochs are keyed by number, the latest line winning, so a log appended over several calls reads
    as one run."""
    epochs: dict[int, dict[str, float]] = {}
    final: dict[str, float] | None = None
    resumed: list[int] = []
    for line in text.splitlines():
        if m := re.search(r"resumed from .* at cycle \d+ epoch (\d+)", line):
            resumed.append(int(m.group(1)))
        elif m := re.search(r"cycle \d+ \| (.*)$", line):
            values = {k: float(v) for k, v in _METRIC.findall(m.group(1))}
            if "epoch" in values:
                epochs[int(values["epoch"])] = values
        elif m := re.search(r"final: (.*)$", line):
            final = {k: float(v) for k, v in _METRIC.findall(m.group(1))}
    return {"epochs": [epochs[k] for k in sorted(epochs)], "final": final, "resumed_at_epochs": resumed}


RUNS = {"pmp": (), "dense": ("pruner=dense",)}


def train_command(run: Run, name: str, epochs: int) -> list[str]:
    """``python -m repro.train`` with the preset and the overrides of this mode (the real entry point)."""
    return [sys.executable, "-m", "repro.train", "experiment=pmp_resnet18", "tracking=none", f"trainer.epochs={epochs}",
            "trainer.progress=log", "data.download=false", f"data.root={data_root(run.args)}",
            f"hydra.run.dir={run.state_dir / 'hydra' / name}", *run.profile.train_overrides, *RUNS[name]]


def training(run: Run, result: dict[str, Any]) -> None:
    """Plan the epochs once (kept in the state, so a later call resumes the same runs: the epoch
    count is part of a run's identity and checkpoint name), then run PMP and dense, each under a cap;
    a run stopped at its cap has its last epoch checkpointed and resumes on the next call."""
    p, args = run.profile, run.args
    plan = run.state.get("plan")
    eval_fraction = p.test_images / p.train_images / 3 * 1.5  # a test pass: forward only, larger batches
    if plan is None or args.epochs:
        epoch_s, source = epoch_seconds(run)
        remaining = run.remaining() - args.reserve
        epochs = args.epochs or epochs_allowed(epoch_s, remaining, runs=len(RUNS), overhead_s=p.run_overhead_s,
                                               eval_fraction=eval_fraction, max_epochs=p.max_epochs)
        plan = {"epochs": epochs, "epoch_s": round(epoch_s, 3), "epoch_s_from": source, "eval_fraction": round(eval_fraction, 4),
                "overhead_s": p.run_overhead_s, "remaining_s_at_plan": round(remaining, 1), "runs": list(RUNS),
                "arithmetic": "epochs = floor((remaining * 0.85 - runs * overhead) / (runs * epoch_s * (1 + eval_fraction)))"
                              f", at most {p.max_epochs}" + (" (--epochs given)" if args.epochs else "")}
        if run.state.get("plan", {}).get("epochs") != epochs:
            result["runs"] = {}  # another epoch count is another run (identity, checkpoint): new logs too
            for old in run.state_dir.glob("train-*.log"):
                old.unlink()
        run.state["plan"] = plan
    result["plan"] = plan
    runs = result.setdefault("runs", {})
    if plan["epochs"] < 1:
        result["skipped"] = "the budget left fits no epoch"
        return
    estimate = run_estimate(plan["epochs"], plan["epoch_s"], overhead_s=p.run_overhead_s, eval_fraction=plan["eval_fraction"])
    env = {**os.environ, "REPRO_CKPT_DIR": str(run.state_dir / "checkpoints"), "REPRO_CACHE_DIR": str(cache_dir()),
           "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    names = list(RUNS)
    for i, name in enumerate(names):
        rec = runs.setdefault(name, {"status": "pending"})
        if rec["status"] == "done":
            run.log(f"  train {name}: done in an earlier call")
            continue
        later = sum(estimate for n in names[i + 1:] if runs.get(n, {}).get("status") != "done")
        remaining = run.remaining() - args.reserve
        if remaining < p.run_overhead_s:
            rec.update(status="not started", reason=f"budget: {remaining:.0f} s left")
            continue
        cap = run_cap(remaining, estimate, later)
        cmd = train_command(run, name, plan["epochs"])
        log_path = run.state_dir / f"train-{name}.log"
        run.log(f"  train {name}: {plan['epochs']} epochs, cap {cap:.0f} s")
        t0 = time.perf_counter()
        with log_path.open("a") as log_file:
            log_file.write(f"\n### {now()} {shlex.join(cmd)}\n")
            log_file.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
            try:
                rc: int | None = proc.wait(timeout=cap)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                rc = None
        text = log_path.read_text(errors="replace")
        parsed = parse_train_log(text)
        epochs_done = len(parsed["epochs"])
        rec.update(command=shlex.join(["python", *cmd[1:]]), returncode=rc, wall_s_this_call=round(time.perf_counter() - t0, 1),
                   epochs_planned=plan["epochs"], epochs_done=epochs_done, resumed_at_epochs=parsed["resumed_at_epochs"],
                   history=parsed["epochs"], final=parsed["final"] or (parsed["epochs"][-1] if parsed["epochs"] else None),
                   log_tail=text.splitlines()[-15:])
        if rc == 0 and epochs_done >= plan["epochs"]:
            rec["status"] = "done"
            rec.pop("reason", None)
        elif rc is None:
            rec.update(status="capped", reason=f"stopped at its {cap:.0f} s cap after epoch {epochs_done} of "
                                               f"{plan['epochs']}: call again (machine warm) to resume from the checkpoint")
        else:
            rec.update(status="error", reason=f"repro-train exited {rc}")
        times = [e.get("perf/epoch_time_s", e.get("epoch_time")) for e in parsed["epochs"]
                 if "perf/epoch_time_s" in e or "epoch_time" in e]
        if times:
            rec["epoch_time_median_s"] = sorted(times)[len(times) // 2]
        run.log(f"  train {name}: {rec['status']} ({epochs_done}/{plan['epochs']} epochs)")
        run.save()
    done = [runs[n] for n in names if runs.get(n, {}).get("status") == "done" and runs[n].get("final")]
    if len(done) == len(names):
        a, b = runs["pmp"]["final"], runs["dense"]["final"]
        # accuracies in percent under the namespaced names; fractions under the flat names of older logs
        key, pp = next(((k, f) for k, f in (("final/test_acc", 1), ("test/acc", 1), ("final_test_acc", 100),
                                            ("test_acc", 100)) if k in a and k in b), ("final/test_acc", 1))
        result["pmp_minus_dense_pp"] = round(pp * (a[key] - b[key]), 2)
        result["compared"] = key
    unfinished = {n: runs.get(n, {}).get("status") for n in names if runs.get(n, {}).get("status") != "done"}
    if unfinished:
        what = ", ".join(f"{n} {st}" for n, st in unfinished.items())
        if all(st in ("capped", "not started") for st in unfinished.values()):
            raise CapReached(f"not finished within the budget ({what}): call again while the machine is warm to resume")
        raise RuntimeError(f"not every training run finished: {what}")
