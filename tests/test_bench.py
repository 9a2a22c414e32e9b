"""Smoke tests of the benchmark (``tools/bench.py``, the package ``tools/bench/``) at tiny sizes: it
runs, and its JSON has the promised shape.

No timing is asserted: these run on loaded CI machines. ``tools/`` is not an installed package,
so the package is imported from its folder (put first on ``sys.path`` here rather than in the
shared conftest, since only these tests and ``test_gpu_check.py`` need it).
"""

from __future__ import annotations

import copy
import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from repro import models
from repro.config import ScheduleConfig
from repro.data import Dataset, Split

TOOLS = Path(__file__).resolve().parent.parent / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
cli, loops, report, runner, selection, specs, timing, training = (
    importlib.import_module(f"bench.{name}")
    for name in ("cli", "loops", "report", "runner", "selection", "specs", "timing", "training"))


def synthetic(name: str, n: int, channels: int, size: int) -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return Dataset(name, "synthetic", Split(images, labels), Split(images[:16], labels[:16]))


TINY = specs.Settings(repeats=2, warmup=1, update_frequency=2, selection_repeats=1, loader_batch=8, loader_batches=2,
                      loader_workers=(0,))
SPECS = (
    specs.TrainSpec("lenet300-b8", "lenet300", "mnist", 8, 4),
    specs.TrainSpec("vgg19w0.0625-b8", "vgg19", "cifar10", 8, 2, 0.0625),
)


@pytest.fixture(scope="module")
def result() -> dict:
    data = {"mnist": synthetic("mnist", 64, 1, 28), "cifar10": synthetic("cifar10", 64, 3, 32)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs would dominate on a busy machine
    try:
        return runner.run(TINY, specs=SPECS, selection_models=("lenet300",), loader=True, datasets=data,
                         selection_in_process=True, log=lambda msg: None)
    finally:
        torch.set_num_threads(threads)


def test_result_names_the_machine_and_the_code(result):
    assert result["schema"] == specs.SCHEMA
    assert result["device"] == "cpu"
    for key in ("platform", "cpu_model", "cpu_count", "cpus_usable", "torch", "torch_threads"):
        assert key in result["machine"], key
    assert result["machine"]["torch"] == torch.__version__
    assert set(result["git"]) == {"commit", "dirty"}
    assert isinstance(result["malloc_reuse"], bool)
    assert result["settings"]["repeats"] == 2 and result["settings"]["update_frequency"] == 2


def test_training_has_every_contender_and_paired_ratio(result):
    assert [t["key"] for t in result["training"]] == [s.key for s in SPECS]
    for t in result["training"]:
        assert set(t["contenders"]) == {"dense", "pmp", "hooks", "bare", "dense-torchsgd", "pmp-adam",
                                        "pmp-adam-pertensor"}
        for c in t["contenders"].values():
            assert len(c["images_per_s"]["runs"]) == 2 and c["images_per_s"]["median"] > 0
            assert len(c["seconds"]) == 2
            assert len(c["minor_faults"]) == 2 and all(f >= 0 for f in c["minor_faults"])
        assert set(t["ratios"]) == {"pmp/dense", "dense/bare", "pmp/hooks", "dense/dense-torchsgd",
                                    "adam: fused/per-tensor"}
        for name, r in t["ratios"].items():
            assert len(r["runs"]) == 2 and r["min"] <= r["q1"] <= r["median"] <= r["q3"] <= r["max"]
            if name not in ("dense/dense-torchsgd", "adam: fused/per-tensor"):  # informational, no target
                assert isinstance(r["pass"], bool) and r["target"] > 0
        assert t["mask_updates_per_measurement"] == t["steps"] // 2
        # pruning was active: the window spans the whole benchmark and ends at the final sparsity
        assert t["final_sparsity_pmp"] == pytest.approx(TINY.final_sparsity, abs=1e-3)
    lenet = result["training"][0]
    assert lenet["ratios"]["pmp/hooks"]["target"] == specs.TARGETS["pmp/hooks (lenet300, batch <= 128)"]


def test_the_torch_sgd_contender_is_the_suite_loop_with_torchs_optimizer():
    from repro.config import PrunerConfig
    from repro.optim import MaskedSGD
    from repro.pruning.methods import GradualMagnitude

    data = synthetic("mnist", 32, 1, 28)
    model = models.build("lenet300", num_classes=10, in_channels=1)
    pmp = GradualMagnitude(PrunerConfig(name="pmp"), 0.5, ScheduleConfig(end=1.0, update_frequency=1))
    ours = loops.SuiteLoop(pmp, model, data, 8, 1, torch.device("cpu"), TINY)
    theirs = loops.SuiteLoop(pmp, copy.deepcopy(model), data, 8, 1, torch.device("cpu"), TINY,
                             engine=loops.TorchSGDEngine)
    assert type(ours.engine.optimizer) is MaskedSGD and not ours.engine.mask_grads
    assert type(theirs.engine.optimizer) is torch.optim.SGD and theirs.engine.mask_grads
    assert theirs.engine.optimizer.param_groups[0]["lr"] == TINY.lr


def test_the_adam_pair_differs_only_in_the_kernel():
    from repro.config import PrunerConfig
    from repro.pruning.methods import GradualMagnitude

    data = synthetic("mnist", 32, 1, 28)
    model = models.build("lenet300", num_classes=10, in_channels=1)
    pmp = GradualMagnitude(PrunerConfig(name="pmp"), 0.5, ScheduleConfig(end=1.0, update_frequency=1))
    fused = loops.SuiteLoop(copy.deepcopy(pmp), model, data, 8, 1, torch.device("cpu"), TINY, optim=training.ADAM)
    per_tensor = loops.SuiteLoop(copy.deepcopy(pmp), copy.deepcopy(model), data, 8, 1, torch.device("cpu"), TINY,
                                 engine=loops.TorchAdamEngine, optim=training.ADAM)
    groups = [loop.engine.optimizer.param_groups[0] for loop in (fused, per_tensor)]
    assert all(type(loop.engine.optimizer) is torch.optim.Adam for loop in (fused, per_tensor))
    assert [g["fused"] for g in groups] == [True, False] and groups[1]["foreach"] is False
    assert all(g["lr"] == 1.2e-3 and g["weight_decay"] == 0.0 for g in groups)
    assert fused.engine.mask_grads and per_tensor.engine.mask_grads  # the loop masks Adam's gradients in both


def test_selection_and_loader_sections(result):
    (sel,) = result["selection"]
    assert sel["model"] == "lenet300" and sel["exact_count"] is True
    assert len(sel["seconds"]) == 2 and sel["extra_peak_bytes"] >= 0
    assert {"cold_s", "median_s", "extra_x_weights", "memory_method", "pass_time", "pass_memory"} <= set(sel)
    loader = result["loader"]
    assert set(loader["contenders"]) == {"ours", "torchvision-w0"}
    assert loader["check"]["peer"] == "torchvision-w0" and isinstance(loader["check"]["pass"], bool)


def test_checks_table_and_files(result, tmp_path):
    names = [row["check"] for row in result["checks"]]
    assert len(names) == 3 * len(SPECS) + 2 + 1
    assert result["all_pass"] == all(row["pass"] for row in result["checks"])
    path, md = report.write(result, tmp_path)
    assert path.name.startswith("cpu-") and path.suffix == ".json"
    assert json.loads(path.read_text())["checks"] == json.loads(json.dumps(result["checks"]))
    text = md.read_text()
    assert "| check |" in text and ("PASS" in text or "MISS" in text) and path.name in text


def test_selection_worker_runs_in_a_fresh_process():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # passed on to the worker as --threads
    try:
        (sel,) = selection.bench_selection(("lenet300",), specs.Settings(selection_repeats=1))
    finally:
        torch.set_num_threads(threads)
    assert sel["num_prunable"] == 784 * 3 * 300 + 300 * 100 + 100 * 10  # the worker builds 3-channel models
    assert sel["exact_count"] is True


def test_cli_rejects_unknown_parts():
    with pytest.raises(SystemExit):
        cli.main(["--only", "nonsense", "--no-write"])


def test_full_benchmark_design():
    """At least 5 interleaved repeats; every window holds whole PMP update periods."""
    settings = specs.Settings()
    assert settings.repeats >= 5
    assert all(spec.steps % settings.update_frequency == 0 for spec in specs.FULL_SPECS)


def test_timed_counts_the_page_faults_of_fresh_memory():
    """A window that touches memory fresh from the system reports its minor faults."""
    import mmap

    def touch() -> int:
        with mmap.mmap(-1, 64 << 20) as m:  # 64 MiB of untouched anonymous pages
            for i in range(0, len(m), 4096):
                m[i] = 1
        return 1

    _, items, faults = timing.timed(touch, torch.device("cpu"))
    assert items == 1 and faults >= 16  # 16384 with 4 KiB pages, 32 with 2 MiB transparent huge pages


def test_epoch_part_times_dense_and_pmp_under_a_variant():
    """The GPU epoch-time part at toy size on CPU: the variant reaches the loop, epoch seconds follow
    from the median rate, and its target is a row of the checks only on CUDA."""
    assert specs.Variant.parse("bf16-cl-compile") == specs.Variant("bf16", True, True)
    assert specs.Variant.parse("fp32").key == "fp32"
    with pytest.raises(ValueError):
        specs.Variant.parse("fp16-cl")
    data = synthetic("cifar10", 64, 3, 32)
    spec = specs.TrainSpec("vgg19w0.0625-b8", "vgg19", "cifar10", 8, 2, 0.0625)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        e = training.bench_epoch(spec, data, TINY, specs.Variant.parse("fp32-cl"), epoch_images=64)
    finally:
        torch.set_num_threads(threads)
    assert e["variant"] == "fp32-cl" and e["channels_last"] is True and e["compile"] is False
    assert set(e["contenders"]) == {"dense", "pmp"} and e["warmup_s"] >= 0
    for c in e["contenders"].values():
        assert c["epoch_s"] == pytest.approx(64 / c["images_per_s"]["median"])
    assert e["final_sparsity_pmp"] == pytest.approx(TINY.final_sparsity, abs=1e-3)
    assert report.checks({"epoch": [e]}) == []  # a CPU run has no epoch-time target
    rows = report.checks({"epoch": [{**e, "device": "cuda"}]})
    assert len(rows) == 2 and all(r["op"] == "<=" and r["target"] == 3.0 for r in rows)
