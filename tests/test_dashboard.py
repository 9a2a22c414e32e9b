"""What the MLflow UI shows of a run (issue 15): the logged model, the sweep's parent run, the
dataset input and description, the saved view of the runs table. In-process except where a
fresh process is the point (loading the logged model)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from repro import dashboard, records
from repro.sweep_run import PARENT_FILE, SweepRun, summary
from tests.conftest import ROOT, SHARED_DATA, needs_mnist, runs_of

TINY = ("model=lenet300", "data=mnist", "trainer.epochs=1", "trainer.batch_size=100", "data.train_subset=500",
        "data.test_subset=300", "data.download=false", "pruner=pmp", "sparsity=0.8", "schedule.update_frequency=1")

#: a fresh process: load the logged model, score it on the run's 300 test images (normalised by hand
#: with MNIST's mean and std), print the accuracy in percent and the count of exact zeros
LOAD = """
import sys, mlflow, torch
from repro import data
mlflow.set_tracking_uri(sys.argv[1])
net = mlflow.pytorch.load_model(f"runs:/{sys.argv[2]}/model")
ds = data.load("mnist", sys.argv[3], source="auto", val_size=0, download=False, cache_dir=sys.argv[4],
              test_subset=300)
x = (ds.test.images.float() / 255.0 - 0.1307) / 0.3081
with torch.no_grad():
    correct = (net(x).argmax(1) == ds.test.labels).sum().item()
zeros = sum(int((p == 0).sum()) for n, p in net.state_dict().items() if n.endswith("weight"))
print(100.0 * correct / len(x), zeros, any(n.endswith("_mask") for n in net.state_dict()))
"""


@needs_mnist
def test_logged_model_loads_in_a_fresh_process_with_the_runs_test_accuracy(train_run):
    train_run(*TINY, "tracking.log_model=true")
    (run,) = runs_of(train_run.uri)
    proc = subprocess.run([sys.executable, "-c", LOAD, train_run.uri, run.info.run_id, str(SHARED_DATA),
                           str(ROOT / ".cache" / "repro")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    acc, zeros, has_masks = proc.stdout.split()[-3:]
    # the run's own evaluation fuses normalisation into one multiply-add: an image may tip
    assert abs(float(acc) - run.data.metrics[records.FINAL_TEST_ACC]) <= 100.0 / 300
    # masks folded into the weights: at least the pruned weights are exact zeros, no mask buffers
    assert int(zeros) >= run.data.metrics[records.NUM_ZEROS] == round(0.8 * 266_200) and has_masks == "False"
    # the masks stay an artifact of their own (mask_from, repro-export)
    assert records.FINAL_STATE_ARTIFACT in {a.path for a in MlflowClient(train_run.uri).list_artifacts(run.info.run_id)}


@needs_mnist
def test_a_run_records_its_dataset_command_and_the_saved_view(train_run):
    train_run(*TINY)
    (run,) = runs_of(train_run.uri)
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "mnist" and len(inp.dataset.digest) == 16
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "train_subset=500,test_subset=300"
    assert json.loads(inp.dataset.profile) == {"train": 500, "test": 300, "classes": 10}
    assert set(json.loads(inp.dataset.source)) == {"source", "root"}  # JSON, whatever the path holds
    assert "sparsity=0.8" in run.data.tags["mlflow.note.content"]
    exp = MlflowClient(train_run.uri).get_experiment(run.info.experiment_id)
    view = json.loads(exp.tags[dashboard.SHARED_VIEW_TAG])
    assert "metrics.`final/test_acc`" in view["selectedColumns"] and "tags.`method`" in view["selectedColumns"]


def test_runs_url_opens_the_model_training_runs_view_with_the_saved_view():
    url = dashboard.runs_url("http://127.0.0.1:5000/", "7")
    assert url == ("http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
                   "&viewStateShareKey=repro-runs")


# ----------------------------------------------------------------------------- the sweep's parent run


def test_status_summary_by_hand():
    assert summary(["FINISHED", "FAILED", "FINISHED"], 2) == ("FAILED 1, FINISHED 2, skipped 2", "FAILED")
    assert summary(["FINISHED"], 0) == ("FINISHED 1", "FINISHED")
    assert summary([], 1) == ("skipped 1", "FINISHED")


def _sweep_config(uri: str, sweep_dir) -> OmegaConf:
    return OmegaConf.create({"tracking": {"enabled": True, "uri": uri, "experiment": "repro"}, "profile": "adhoc",
                             "hydra": {"sweep": {"dir": str(sweep_dir)}, "overrides": {"task": ["seed=0,1"]}}})


@needs_mnist
def test_sweep_jobs_are_children_of_one_parent_and_a_failed_job_fails_it(train_run, tmp_path):
    sweep_dir = tmp_path / "multirun" / "2026-12-03" / "06-00-00"
    callback = SweepRun()
    callback.on_multirun_start(_sweep_config(train_run.uri, sweep_dir))
    parent_id = json.loads((sweep_dir / PARENT_FILE).read_text())["run_id"]
    multirun = ("hydra.mode=MULTIRUN", f"hydra.sweep.dir={sweep_dir}")
    train_run(*TINY, *multirun)  # job 0 trains
    train_run(*TINY, *multirun)  # the same run again: skipped as FINISHED
    from repro.train import JobFailed

    with pytest.raises(JobFailed):  # diverges: FAILED, and the sweep goes on
        train_run(*TINY, *multirun, "seed=1", "optim.lr=1e6")
    callback.on_multirun_end(_sweep_config(train_run.uri, sweep_dir))

    client = MlflowClient(train_run.uri)
    parent = client.get_run(parent_id)
    kids = [r for r in runs_of(train_run.uri) if r.data.tags.get(records.PARENT_RUN_TAG) == parent_id]
    assert sorted(k.info.status for k in kids) == ["FAILED", "FINISHED"]
    assert all(k.data.tags[records.SWEEP_TAG] == "2026-12-03/06-00-00" for k in kids)
    done = next(k for k in kids if k.info.status == "FINISHED")
    assert done.data.tags[records.skipped_by_tag("2026-12-03/06-00-00")] == "1"
    assert parent.data.tags[records.KIND_TAG] == records.KIND_SWEEP
    assert parent.data.tags[records.SWEEP_STATUS_TAG] == "FAILED 1, FINISHED 1, skipped 1"
    assert parent.info.status == "FAILED" and parent.data.params[records.SWEEP_JOBS_PARAM] == "3"
    assert parent.data.params[records.SWEEP_OVERRIDES_PARAM] == "seed=0,1"


def test_a_sweep_that_dies_leaves_its_parent_killed_not_running(mlflow_uri, tmp_path):
    callback = SweepRun()
    callback.on_multirun_start(_sweep_config(mlflow_uri, tmp_path / "sweep"))
    parent_id = callback.run_id
    callback._guard()  # what atexit runs when the sweep process dies before on_multirun_end
    assert MlflowClient(mlflow_uri).get_run(parent_id).info.status == "KILLED"


# ----------------------------------------------------------------------------- the dirty flag


def test_report_outputs_do_not_make_the_checkout_dirty(tmp_path):
    from repro.tracking import git_info

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "results" / "quick" / "table.md").write_text("old\n")
    (tmp_path / "train.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "c")
    (tmp_path / "results" / "quick" / "table.md").write_text("new\n")  # what a report does
    assert git_info(tmp_path)["git_dirty"] == "false"
    (tmp_path / "train.py").write_text("x = 2\n")
    assert git_info(tmp_path)["git_dirty"] == "true"


def test_a_skipped_runs_metrics_read_under_the_current_names_and_units():
    """What a skipped FINISHED run returns to a sweep: old flat names and fractions translated
    (final_test_acc 0.9 -> final/test_acc 90.0), a value under the current name kept as it is."""
    from repro import records as rec

    old = {"final_test_acc": 0.9, "cost_train_flops": 5.0, "made_up": 1.0}
    assert rec.current_metrics(old) == {rec.FINAL_TEST_ACC: 90.0, "cost/train_flops": 5.0, "made_up": 1.0}
    both = {"final_test_acc": 0.9, rec.FINAL_TEST_ACC: 91.0}
    assert rec.current_metrics(both) == {rec.FINAL_TEST_ACC: 91.0}
