"""Runs that survive: kill and resume, skip finished runs, isolate failures, parallel writes,
determinism and end-of-run integrity. In-process through the run entry point, except where a
real process or a launcher is the point (kill -9, sweeps): those are marked slow."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, SHARED_DATA, needs_mnist, repro_train, runs_of

SMALL = ("model=lenet300", "data=mnist", "trainer.batch_size=100", "data.download=false", "data.test_subset=2000")


def metric_steps(uri: str, run_id: str, key: str) -> list[int]:
    return [m.step for m in MlflowClient(uri).get_metric_history(run_id, key)]


@pytest.mark.slow
@needs_mnist
def test_sigkill_mid_epoch_then_rerun_resumes_the_same_run_with_identical_numbers(tmp_path, mlflow_uri, mlflow_template):
    args = (*SMALL, "trainer.epochs=3", "pruner=pmp", "sparsity=0.9", "schedule.end=0.6")
    # the reference: an uninterrupted run in another store and folder
    ref_dir, ref_db = tmp_path / "ref", tmp_path / "ref.db"
    ref_dir.mkdir()
    shutil.copy(mlflow_template, ref_db)
    repro_train(*args, cwd=ref_dir, uri=f"sqlite:///{ref_db}")
    (reference,) = runs_of(f"sqlite:///{ref_db}")

    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "REPRO_CKPT_DIR": str(work / "checkpoints"),
           "REPRO_DATA_DIR": str(SHARED_DATA), "REPRO_CACHE_DIR": str(ROOT / ".cache" / "repro")}
    proc = subprocess.Popen([sys.executable, "-m", "repro.train", "trainer.progress=log", *args], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = work / "checkpoints"
    deadline = time.time() + 120
    while not any(ckpt_dir.glob("*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    time.sleep(0.4)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (crashed,) = runs_of(mlflow_uri)
    assert crashed.info.status == "RUNNING"

    repro_train(*args, cwd=work, uri=mlflow_uri)
    (run,) = runs_of(mlflow_uri)
    assert run.info.run_id == crashed.info.run_id and run.info.status == "FINISHED"
    for key in ("final/test_acc", "final/test_loss", "mask/zeros", "final/best_test_acc"):
        assert run.data.metrics[key] == reference.data.metrics[key], key
    ref_steps = metric_steps(f"sqlite:///{ref_db}", reference.info.run_id, "test/acc")
    assert len(ref_steps) == 3 and metric_steps(mlflow_uri, run.info.run_id, "test/acc") == ref_steps
    ref_hist = [m.value for m in MlflowClient(f"sqlite:///{ref_db}").get_metric_history(reference.info.run_id, "train/loss")]
    got = [m.value for m in MlflowClient(mlflow_uri).get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(got) == sorted(ref_hist)


@needs_mnist
def test_rerunning_a_finished_config_trains_nothing_even_elsewhere(train_run, caplog):
    caplog.set_level(logging.INFO, logger="repro.train")
    args = (*SMALL, "data.train_subset=1000", "trainer.epochs=1", "pruner=pmp", "sparsity=0.5")
    first = train_run(*args, "hydra.run.dir=out_a")
    caplog.clear()
    again = train_run(*args, "hydra.run.dir=out_b")
    assert "skipping" in caplog.text
    assert again.value["final/test_acc"] == first.value["final/test_acc"]
    assert len(runs_of(train_run.uri)) == 1
    train_run(*args, "rerun=true")
    assert len(runs_of(train_run.uri)) == 2


@needs_mnist
def test_a_config_skipped_by_a_profile_joins_it(train_run, caplog):
    """An ad-hoc run that a profile's sweep later finds FINISHED counts in that profile's report."""
    from repro.report import fetch_runs

    caplog.set_level(logging.INFO, logger="repro.train")
    small = ("data.train_subset=500", "data.test_subset=1000", "data.download=false", "trainer.epochs=1", "sparsity=0.5")
    adhoc = ("model=lenet300", "data=mnist", "pruner=pmp", "optim=sgd_multistep", "trainer.batch_size=100",
             "optim.lr=0.1", "optim.momentum=0.9", "optim.weight_decay=5e-4", "optim.warmup_epochs=1")
    train_run(*adhoc, *small, "hydra.run.dir=out_a")
    caplog.clear()
    train_run("+profile=mnist", "+row=mnist/lenet300_pmp", *small, "hydra.run.dir=out_b")
    assert "skipping" in caplog.text
    (run,) = runs_of(train_run.uri)
    assert run.data.tags["profile"] == "adhoc" and run.data.tags["repro.profile.mnist"] == "1"
    assert [len(fetch_runs(train_run.uri, "repro", p)) for p in ("adhoc", "mnist", "quick")] == [1, 1, 0]


@pytest.mark.slow
@needs_mnist
def test_one_failing_job_does_not_stop_the_sweep(train_cli):
    """A job that fails while training (the loss diverges) ends FAILED with its reason; the others finish."""
    proc = train_cli("-m", *SMALL, "data.train_subset=500", "trainer.epochs=1", "pruner=pmp", "sparsity=0.9",
                     "optim.lr=0.1,1e12,0.05", check=False)
    assert proc.returncode != 0
    runs = runs_of(train_cli.uri)
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED", "FINISHED"]
    (failed,) = [r for r in runs if r.info.status == "FAILED"]
    reason = failed.data.tags["repro.failure"]
    assert "loss became nan" in reason or "loss became inf" in reason


@pytest.mark.slow
@needs_mnist
def test_parallel_jobs_on_a_brand_new_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"  # not the pre-migrated template
    repro_train("-m", "hydra/launcher=joblib", *SMALL, "data.train_subset=500", "trainer.epochs=1", "pruner=pmp",
                "sparsity=0.5,0.6,0.7,0.8", cwd=tmp_path, uri=uri)
    runs = runs_of(uri)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)


def _write_idx(path, array) -> None:
    """An IDX ubyte file written from its spec (magic 0x08, the dimension count, big-endian sizes)."""
    import struct

    path.write_bytes(struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype("uint8").tobytes())


@needs_mnist
def test_logged_final_accuracy_is_recomputed_from_the_checkpoint(train_run, tmp_path):
    """The logged accuracy is the checkpoint's, scored independently of repro's data and
    evaluation code (torchvision reads the images; normalisation and argmax written out here),
    on a network with BatchNorm, so scoring in train mode would be caught. The run reads a
    copy of the first 300/500 MNIST images written here, so no subset sampling is involved."""
    import torchvision

    train_set = torchvision.datasets.MNIST(str(SHARED_DATA), train=True, download=False)
    test_set = torchvision.datasets.MNIST(str(SHARED_DATA), train=False, download=False)
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, split, n in (("train", train_set, 300), ("t10k", test_set, 500)):
        _write_idx(raw / f"{stem}-images-idx3-ubyte", split.data[:n].numpy())
        _write_idx(raw / f"{stem}-labels-idx1-ubyte", split.targets[:n].numpy())
    train_run(*SMALL, "model=resnet20", "model.width=0.125", f"data.root={tmp_path / 'data'}",
              f"data.cache_dir={tmp_path / 'cache'}", "data.test_subset=0", "trainer.epochs=1", "pruner=pmp",
              "sparsity=0.8")
    (run,) = runs_of(train_run.uri)
    assert (run.data.tags["tf32_cudnn"], run.data.tags["tf32_matmul"]) == ("false", "false")  # fp32 on CPU
    ckpt = torch.load(train_run.cwd / "checkpoints" / f"{run.data.tags['repro.identity']}.pt", weights_only=False)
    from repro import models
    from repro.pruning.masks import MaskSet, check_integrity

    model = models.build("resnet20", in_channels=1, width=0.125)
    MaskSet(model)  # registers the mask buffers the checkpoint holds
    model.load_state_dict(ckpt["model"])
    check_integrity(MaskSet(model), 0.8, "global")
    images = (test_set.data[:500].float().unsqueeze(1) / 255.0 - 0.1307) / 0.3081
    model.eval()
    with torch.no_grad():
        correct = (model(images).argmax(1) == test_set.targets[:500]).sum().item()
    # the run normalises with one fused multiply-add: a borderline logit may tip an image
    assert abs(correct - 5 * run.data.metrics["final/test_acc"]) <= 1  # percent of 500


def test_null_tracker_has_the_trackers_interface_and_nothing_else():
    """tracking=none must accept every call the real tracker gets, and a misspelt one must fail."""
    import inspect

    from repro.tracking import NullTracker, Tracker

    public = {n for n, f in inspect.getmembers(Tracker, inspect.isfunction) if not n.startswith("_")}
    null = {n for n, f in inspect.getmembers(NullTracker, inspect.isfunction) if not n.startswith("_")}
    assert public == null
    for name in public:
        assert inspect.signature(getattr(Tracker, name)).parameters.keys() == \
            inspect.signature(getattr(NullTracker, name)).parameters.keys(), name
    with pytest.raises(AttributeError):
        NullTracker().log_metric({"x": 1.0})


def test_tracker_survives_a_parallel_job_creating_the_experiment_first(mlflow_uri, monkeypatch):
    """On a server store the SQLite lock does not apply: two fresh jobs may both try to create
    the experiment, and the loser must use the winner's (seen as a flaky 2-job sweep on PostgreSQL)."""
    from repro.tracking import Tracker

    first = Tracker(mlflow_uri, "race")
    real = MlflowClient.get_experiment_by_name
    calls = []

    def stale_once(self, name):  # the second job looked before the first one created it
        calls.append(name)
        return None if len(calls) == 1 else real(self, name)

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", stale_once)
    second = Tracker(mlflow_uri, "race")
    assert second.experiment_id == first.experiment_id and len(calls) == 2
