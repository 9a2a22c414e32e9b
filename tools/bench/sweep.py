"""``make bench BENCH_ARGS="--sweep"``: sweep throughput, what running jobs side by side pays (issue 22).

N training jobs of one fixed small spec (LeNet-300-100 on an MNIST subset, tracking off) run

- ``sequential``: one after another, each with the default ``trainer.threads=0`` (alone: every core);
- ``auto``: all at once, ``trainer.threads=0``: the rule of :mod:`repro.threads` shares the cores;
- ``oversubscribed``: all at once, each with every core's worth of threads (``trainer.threads=<cores>``):
  the collapse the rule guards against.

Each job is its own process (``python tools/bench.py --sweep-worker THREADS``, by file path) that
imports and composes first, says ``ready``, and starts :func:`repro.train.run` when the parent says
``go``, so process start-up is outside every timing; a job's time includes its data load (cached)
and evaluation, alike in every mode. Total images/s = N x images per job / span, the span being
the sum of the jobs' times (sequential) or first start to last end (side by side). Modes run in
rounds, the order reversed every other round. The jobs share a private trainer registry
(``REPRO_TRAINER_LOCK_DIR``), so the auto rule sees exactly these N jobs.
Results: ``results/bench/sweep-<date>.json`` and ``results/bench/sweep-latest.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repro.threads import usable_cores
from repro.tracking import PROJECT_ROOT

from .machine import git_state, machine_info
from .report import write_files

#: the script the workers run as (its ``--sweep-worker`` option)
SCRIPT = Path(__file__).resolve().parent.parent / "bench.py"
MODES = ("sequential", "auto", "oversubscribed")


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """The job every worker trains: small enough that a round takes seconds, not minutes."""

    jobs: int = 2
    images: int = 20_000
    epochs: int = 2
    batch: int = 100
    test_images: int = 2_000
    rounds: int = 3

    def overrides(self, threads: int, workdir: Path, job: int) -> list[str]:
        """Job ``job``'s overrides: seeds differ, so that the jobs are distinct runs (one run trains once at a time)."""
        return [f"seed={job}", "model=lenet300", "data=mnist", "tracking=none", f"trainer.epochs={self.epochs}",
                f"trainer.batch_size={self.batch}", f"data.train_subset={self.images}",
                f"data.test_subset={self.test_images}", "data.download=false", f"trainer.threads={threads}",
                "trainer.progress=none", "trainer.save_model=false", "trainer.checkpoint_every=0",
                f"trainer.checkpoint_dir={workdir / 'checkpoints'}"]


QUICK = SweepSpec(images=1_000, epochs=1, test_images=500, rounds=1)


# ----------------------------------------------------------------------------- the worker
def sweep_worker(threads: int, overrides: list[str]) -> dict[str, Any]:
    """One job: compose, say ready, wait for go, run it as repro-train does; its times and threads."""
    from hydra import compose, initialize_config_dir

    from repro.records import FINAL_TEST_ACC
    from repro.train import CONF_DIR, run

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    threads_log = logging.getLogger("repro.threads")
    threads_log.addHandler(handler)
    threads_log.setLevel(logging.INFO)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("sweep worker: no go")
    start = time.time()
    final = run(cfg)
    end = time.time()
    return {"start": start, "end": end, "seconds": end - start, "threads_log": said, "requested_threads": threads,
            "final_test_acc": (final or {}).get(FINAL_TEST_ACC)}


# ----------------------------------------------------------------------------- the parent
def _spawn(threads: int, spec: SweepSpec, workdir: Path, env: dict[str, str], job: int) -> subprocess.Popen:
    cmd = [sys.executable, str(SCRIPT), "--sweep-worker", str(threads), "--", *spec.overrides(threads, workdir, job)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=PROJECT_ROOT, env=env)


def _wait_ready(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"sweep worker did not start: {line}\n{proc.stderr.read()[-3000:] if proc.stderr else ''}")


def _go_and_collect(procs: list[subprocess.Popen]) -> list[dict[str, Any]]:
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"sweep worker failed ({p.returncode}):\n{stderr[-3000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def run_mode(mode: str, spec: SweepSpec, cores: int, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    """The N jobs of one mode; their span and total images/s."""
    threads = cores if mode == "oversubscribed" else 0
    if mode == "sequential":
        jobs = []
        for job in range(spec.jobs):
            proc = _spawn(threads, spec, workdir, env, job)
            _wait_ready(proc)
            jobs += _go_and_collect([proc])
        span = sum(j["seconds"] for j in jobs)
    else:
        procs = [_spawn(threads, spec, workdir, env, job) for job in range(spec.jobs)]
        for p in procs:
            _wait_ready(p)
        jobs = _go_and_collect(procs)
        span = max(j["end"] for j in jobs) - min(j["start"] for j in jobs)
    images = spec.jobs * spec.images * spec.epochs
    return {"mode": mode, "span_s": span, "images_per_s": images / span, "jobs": jobs}


def _ratio(a: list[float], b: list[float]) -> float:
    """Median of per-round paired ratios (rounds share the machine's drift)."""
    return statistics.median(x / y for x, y in zip(a, b))


def bench_sweep(spec: SweepSpec, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every mode, ``spec.rounds`` times, order reversed every other round; the JSON-able result."""
    cores = usable_cores()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="repro-bench-sweep-") as tmp:
        workdir = Path(tmp)
        env = {**os.environ, "REPRO_TRAINER_LOCK_DIR": str(workdir / "trainers")}
        for r in range(spec.rounds):
            order = MODES if r % 2 == 0 else tuple(reversed(MODES))
            result = {}
            for mode in order:
                log(f"sweep throughput: round {r + 1}/{spec.rounds}, {mode} ({spec.jobs} jobs)")
                result[mode] = run_mode(mode, spec, cores, workdir, env)
                log(f"  {result[mode]['images_per_s']:.0f} images/s in total ({result[mode]['span_s']:.1f} s)")
            rounds.append(result)
    per_mode = {m: [r[m]["images_per_s"] for r in rounds] for m in MODES}
    return {
        "schema": "repro-bench-sweep/1", "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(__import__("torch").device("cpu")), "git": git_state(), "spec": dataclasses.asdict(spec),
        "cores": cores, "rounds": rounds,
        "images_per_s": {m: statistics.median(v) for m, v in per_mode.items()},
        "ratios": {"auto/sequential": _ratio(per_mode["auto"], per_mode["sequential"]),
                   "auto/oversubscribed": _ratio(per_mode["auto"], per_mode["oversubscribed"]),
                   "sequential/oversubscribed": _ratio(per_mode["sequential"], per_mode["oversubscribed"])},
    }


def render(result: dict[str, Any]) -> str:
    s, m = result["spec"], result["machine"]
    threads = {mode: sorted({line for rd in result["rounds"] for j in rd[mode]["jobs"] for line in j["threads_log"]})
               for mode in MODES}
    lines = [f"# repro bench: sweep throughput, {result['date']}", "",
             f"machine: {m['cpu_model']}, {result['cores']} usable CPUs; git {result['git']['commit'][:12]} "
             f"(dirty: {result['git']['dirty']}); load average at start {m.get('loadavg_start')}",
             f"spec: {s['jobs']} jobs of LeNet-300-100 on {s['images']} MNIST images x {s['epochs']} epochs, batch "
             f"{s['batch']}, tracking off; {s['rounds']} round(s), medians", "",
             "| mode | threads per job | images/s in total |", "| --- | --- | ---: |"]
    for mode in MODES:
        lines.append(f"| {mode} | {'; '.join(threads[mode]) or 'n/a'} | {result['images_per_s'][mode]:.0f} |")
    lines += ["", "| ratio | median of per-round ratios |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.2f} |" for k, v in result["ratios"].items()]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``sweep-<date>.json`` and ``sweep-latest.md`` (apart from the main bench's latest.md)."""
    return write_files(result, out_dir, "sweep-", "sweep-latest.md", render(result))
