"""Smoke tests of ``repro.bench`` at tiny sizes: it runs, and its JSON has the promised shape.

No timing is asserted: these run on loaded CI machines.
"""

from __future__ import annotations

import json

import pytest
import torch

from repro import bench
from repro.data import Dataset, Split


def synthetic(name: str, n: int, channels: int, size: int) -> Dataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return Dataset(name, "synthetic", Split(images, labels), Split(images[:16], labels[:16]))


TINY = bench.Settings(repeats=2, warmup=1, update_frequency=2, selection_repeats=1, loader_batch=8, loader_batches=2,
                      loader_workers=(0,))
SPECS = (
    bench.TrainSpec("lenet300-b8", "lenet300", "mnist", 8, 4),
    bench.TrainSpec("vgg19w0.0625-b8", "vgg19", "cifar10", 8, 2, 0.0625),
)


@pytest.fixture(scope="module")
def result() -> dict:
    data = {"mnist": synthetic("mnist", 64, 1, 28), "cifar10": synthetic("cifar10", 64, 3, 32)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: thread hand-offs would dominate on a busy machine
    try:
        return bench.run(TINY, specs=SPECS, selection_models=("lenet300",), loader=True, datasets=data,
                         selection_in_process=True, log=lambda msg: None)
    finally:
        torch.set_num_threads(threads)


def test_result_names_the_machine_and_the_code(result):
    assert result["schema"] == bench.SCHEMA
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
        assert set(t["contenders"]) == {"dense", "pmp", "hooks", "bare", "dense-torchsgd"}
        for c in t["contenders"].values():
            assert len(c["images_per_s"]["runs"]) == 2 and c["images_per_s"]["median"] > 0
            assert len(c["seconds"]) == 2
            assert len(c["minor_faults"]) == 2 and all(f >= 0 for f in c["minor_faults"])
        assert set(t["ratios"]) == {"pmp/dense", "dense/bare", "pmp/hooks", "dense/dense-torchsgd"}
        for name, r in t["ratios"].items():
            assert len(r["runs"]) == 2 and r["min"] <= r["q1"] <= r["median"] <= r["q3"] <= r["max"]
            if name != "dense/dense-torchsgd":  # informational, no target
                assert isinstance(r["pass"], bool) and r["target"] > 0
        assert t["mask_updates_per_measurement"] == t["steps"] // 2
        # pruning was active: the window spans the whole benchmark and ends at the final sparsity
        assert t["final_sparsity_pmp"] == pytest.approx(TINY.final_sparsity, abs=1e-3)
    lenet = result["training"][0]
    assert lenet["ratios"]["pmp/hooks"]["target"] == bench.TARGETS["pmp/hooks (lenet300, batch <= 128)"]


def test_the_torch_sgd_contender_is_the_suite_loop_with_torchs_optimizer():
    from repro.config import PrunerConfig
    from repro.optim import MaskedSGD
    from repro.pruning.methods import GradualMagnitude

    data = synthetic("mnist", 32, 1, 28)
    model = bench.models.build("lenet300", num_classes=10, in_channels=1)
    pmp = GradualMagnitude(PrunerConfig(name="pmp"), 0.5, bench.ScheduleConfig(end=1.0, update_frequency=1))
    ours = bench.SuiteLoop(pmp, model, data, 8, 1, torch.device("cpu"), TINY)
    theirs = bench.SuiteLoop(pmp, bench.copy.deepcopy(model), data, 8, 1, torch.device("cpu"), TINY,
                             engine=bench.TorchSGDEngine)
    assert type(ours.engine.optimizer) is MaskedSGD and not ours.engine.mask_grads
    assert type(theirs.engine.optimizer) is torch.optim.SGD and theirs.engine.mask_grads
    assert theirs.engine.optimizer.param_groups[0]["lr"] == TINY.lr


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
    path, md = bench.write(result, tmp_path)
    assert path.name.startswith("cpu-") and path.suffix == ".json"
    assert json.loads(path.read_text())["checks"] == json.loads(json.dumps(result["checks"]))
    text = md.read_text()
    assert "| check |" in text and ("PASS" in text or "MISS" in text) and path.name in text


def test_selection_worker_runs_in_a_fresh_process():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # passed on to the worker as --threads
    try:
        (sel,) = bench.bench_selection(("lenet300",), bench.Settings(selection_repeats=1))
    finally:
        torch.set_num_threads(threads)
    assert sel["num_prunable"] == 784 * 3 * 300 + 300 * 100 + 100 * 10  # the worker builds 3-channel models
    assert sel["exact_count"] is True


def test_cli_rejects_unknown_parts():
    with pytest.raises(SystemExit):
        bench.main(["--only", "nonsense", "--no-write"])


def test_full_benchmark_design():
    """At least 5 interleaved repeats; every window holds whole PMP update periods."""
    settings = bench.Settings()
    assert settings.repeats >= 5
    assert all(spec.steps % settings.update_frequency == 0 for spec in bench.FULL_SPECS)


def test_timed_counts_the_page_faults_of_fresh_memory():
    """A window that touches memory fresh from the system reports its minor faults."""
    import mmap

    def touch() -> int:
        with mmap.mmap(-1, 64 << 20) as m:  # 64 MiB of untouched anonymous pages
            for i in range(0, len(m), 4096):
                m[i] = 1
        return 1

    _, items, faults = bench.timed(touch, torch.device("cpu"))
    assert items == 1 and faults >= 16  # 16384 with 4 KiB pages, 32 with 2 MiB transparent huge pages
