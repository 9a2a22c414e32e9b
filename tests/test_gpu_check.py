"""The GPU check (``tools/gpu_check.py``, the package ``tools/gpu_check/``): its arithmetic and output
limits in-process, and its dry mode end to end.

The GPU mode itself can only run on a lent GPU; the dry mode runs the same script, phases and
JSON on the CPU, so a broken check, a renamed log line or an output over the device's limits
shows up here first. ``tools/`` is not installed: the package is imported from its folder.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from repro import records
from tests.conftest import ROOT, needs_cifar

TOOLS = ROOT / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
limits = importlib.import_module("gpu_check.limits")
training = importlib.import_module("gpu_check.training")


def test_epochs_allowed_fits_every_run_in_the_remaining_budget():
    kw = {"runs": 2, "overhead_s": 25.0, "eval_fraction": 0.1, "safety": 0.85}
    # (300 * 0.85 - 2 * 25) / (2 * 4 * 1.1) = 23.3
    assert limits.epochs_allowed(4.0, 300.0, **kw) == 23
    for epoch_s in (0.5, 3.0, 7.7):
        for remaining in (60.0, 200.0, 480.0):
            n = limits.epochs_allowed(epoch_s, remaining, max_epochs=10_000, **kw)
            one = limits.run_estimate(n, epoch_s, overhead_s=25.0, eval_fraction=0.1)
            more = limits.run_estimate(n + 1, epoch_s, overhead_s=25.0, eval_fraction=0.1)
            assert 2 * one <= remaining * 0.85 < 2 * more  # as many as fit, no more
    assert limits.epochs_allowed(4.0, 50.0, **kw) == 0  # the overheads alone eat the budget
    assert limits.epochs_allowed(0.01, 10_000.0, max_epochs=160) == 160  # the preset's length caps it
    with pytest.raises(ValueError):
        limits.epochs_allowed(0.0, 100.0)


def test_run_cap_reserves_the_later_runs_but_never_less_than_this_one():
    assert limits.run_cap(300.0, 100.0, 100.0) == 200.0  # slack goes to the run at hand
    assert limits.run_cap(150.0, 100.0, 100.0) == 100.0  # squeezed: its own estimate, the last run gets less
    assert limits.run_cap(60.0, 100.0, 0.0) == 60.0  # never past what is left


def test_output_limits_checker(tmp_path):
    ok = tmp_path / "ok"
    (ok / "a" / "b").mkdir(parents=True)
    for name in ("gpu-check.json", "gpu-check.md", "bench.md"):
        (ok / name).write_text("{}")
    (ok / "a" / "b" / "deep_ok.md").write_text("x")  # two folders down: still returned
    assert limits.output_problems(ok) == []

    bad = tmp_path / "bad"
    (bad / "a" / "b" / "c").mkdir(parents=True)
    for i in range(8):
        (bad / f"f{i}.json").write_text("{}")
    (bad / "a" / "b" / "c" / "too_deep.json").write_text("{}")
    (bad / "model.pt").write_bytes(b"\0")
    (bad / "odd name.md").write_text("x")
    (bad / "link.md").symlink_to(bad / "f0.json")
    problems = "\n".join(limits.output_problems(bad))
    assert "11 files (at most 8)" in problems
    assert "too_deep.json: 3 folders down" in problems
    assert "model.pt: not .json/.md" in problems
    assert "odd name.md: name outside" in problems
    assert "link.md: not a plain file" in problems
    tight = {**limits.OUT_LIMITS, "file_bytes": 1}
    assert any("bytes (at most 1)" in p for p in limits.output_problems(ok, tight))


def test_train_log_parsing_reads_epochs_final_and_resume():
    log = "\n".join([
        "[t][repro.engine][INFO] - cycle 0 | train_loss=2.3, test_acc=0.1, epoch_time=3.5, epoch=1",
        "[t][repro.engine][INFO] - cycle 0 | train_loss=2.0, test_acc=0.2, epoch_time=3.4, epoch=2",
        "### second call",
        "[t][repro.engine][INFO] - resumed from /x/ab12.pt at cycle 0 epoch 2",
        "[t][repro.engine][INFO] - cycle 0 | train_loss=1.5, test_acc=0.45, epoch_time=3.3, epoch=3",
        "[t][repro.train][INFO] - final: final_test_acc=0.45, best_test_acc=0.45, final_sparsity=0.729, cost_train_flops=1.2e+15",
    ])
    parsed = training.parse_train_log(log)
    assert [e["epoch"] for e in parsed["epochs"]] == [1, 2, 3]
    assert parsed["resumed_at_epochs"] == [2]
    assert parsed["final"] == {"final_test_acc": 0.45, "best_test_acc": 0.45, "final_sparsity": 0.729,
                               "cost_train_flops": 1.2e15}


def test_script_entry_finds_its_package_from_anywhere_and_imports_no_torch(tmp_path):
    """``python3 tools/gpu_check.py`` is the device command: the thin script reaches the package
    ``tools/gpu_check/`` whatever the working directory, and importing the check pulls in neither
    torch nor ``repro`` nor Hydra (the device has no Hydra until the environment phase installs it)."""
    proc = subprocess.run([sys.executable, str(TOOLS / "gpu_check.py"), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python tools/gpu_check.py"), proc.stderr
    code = (f"import sys; sys.path.insert(0, {str(TOOLS)!r}); import gpu_check.cli; "
            "print(sorted(m for m in ('torch', 'repro', 'hydra', 'omegaconf', 'bench') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_tools_modules_stay_small_and_say_their_job():
    """The house rule for the two tools: every module has a docstring and stays under 400 lines."""
    for path in sorted(TOOLS.rglob("*.py")):
        text = path.read_text()
        assert text.startswith('"""'), f"{path.relative_to(ROOT)}: no module docstring"
        assert len(text.splitlines()) <= 400, f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines"


@pytest.mark.slow
@needs_cifar
def test_dry_mode_end_to_end(tmp_path):
    """The whole script on the CPU into a tmp $OUT: every correctness check passes, both training
    runs finish through repro-train, the files stay within the device's limits; a second call
    keeps what is done (idempotent) and finishes quickly."""
    out, state = tmp_path / "out", tmp_path / "state"
    env = {**os.environ, "OUT": str(out), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(TOOLS / "gpu_check.py"), "--dry", "--state-dir", str(state)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = json.loads((out / "gpu-check.json").read_text())
    assert doc["mode"] == "dry" and doc["status"] == "complete"
    assert "one seed decides nothing" in doc["note"]
    assert {"command", "commit", "hostname", "date", "date_end"} <= set(doc["provenance"])
    assert doc["environment"]["torch"] and doc["environment"]["cuda_available"] in (True, False)
    names = [c["name"] for c in doc["checks"]]
    assert len(names) == 4 and doc["checks_passed"] is True, doc["checks"]
    assert all(c["pass"] is True for c in doc["checks"])
    recompile = next(c for c in doc["checks"] if "recompile" in c["name"])
    assert recompile["detail"]["mask_updates_in_next_epoch"] >= 1 and recompile["detail"]["graphs_after_warmup_epoch"] >= 1
    assert doc["bench"]["epoch"] and "epoch bf16-cl-compile" in doc["bench"]["skipped"]
    runs = doc["training"]["runs"]
    assert set(runs) == {"pmp", "dense"} and all(r["status"] == "done" for r in runs.values())
    assert runs["pmp"]["final"][records.FINAL_SPARSITY] == pytest.approx(0.729, abs=1e-3)
    assert "pmp_minus_dense_pp" in doc["training"]
    assert doc["outputs"]["problems"] == [] and limits.output_problems(out) == []
    assert sorted(p.name for p in out.iterdir()) == ["bench.md", "gpu-check.json", "gpu-check.md"]
    assert not any(p.suffix == ".pt" for p in out.rglob("*"))  # checkpoints stay in the state folder
    assert any(state.rglob("*.pt"))

    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "checks: done in an earlier call" in again.stdout and "train pmp: done in an earlier call" in again.stdout
    doc2 = json.loads((out / "gpu-check.json").read_text())
    assert doc2["checks"] == doc["checks"] and len(doc2["provenance"]["calls"]) == 2
