"""repro-train end to end: MLflow records, PMP sparsity, bad input, in-process through the run
entry point Hydra calls; multiruns in subprocesses (the launcher is the point), marked slow."""

import pytest
from mlflow.tracking import MlflowClient

from repro import cli
from repro import records as rec
from tests.conftest import needs_mnist, runs_of

TINY = ("model=lenet300", "data=mnist", "trainer.epochs=2", "trainer.batch_size=100", "data.train_subset=1000",
        "data.test_subset=500", "data.download=false")


@needs_mnist
def test_dense_run_is_recorded_with_params_tags_and_epoch_metrics(train_run):
    train_run(*TINY, "pruner=dense")
    (run,) = runs_of(train_run.uri)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "lenet300"
    assert run.data.params["trainer.epochs"] == "2"
    tags = run.data.tags
    for key in ("git_commit", "git_dirty", "torch_version", "device", "data_source", "hydra_overrides", "repro.identity"):
        assert tags.get(key), key
    assert tags["data_source"] == "official" and tags["device"] == "cpu"
    assert "pruner=dense" in tags["hydra_overrides"]
    client = MlflowClient(train_run.uri)
    # per epoch, at step = optimizer steps so far (1000 images in batches of 100: 10 an epoch)
    for key in (rec.TRAIN_LOSS, rec.TRAIN_ACC, rec.TEST_LOSS, rec.TEST_ACC, rec.LR, rec.EPOCH_TIME, rec.SAMPLES_PER_S,
                rec.SPARSITY):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [10, 20], key
    for key in (rec.EPOCH, rec.CYCLE, rec.MASK_FINAL, "epoch", "cycle", "mask_final"):  # the step says when
        assert key not in run.data.metrics
    assert 50.0 < run.data.metrics[rec.FINAL_TEST_ACC] <= 100.0  # percent, as in the report
    assert run.data.metrics[rec.NUM_PRUNABLE] == 266_200  # 784*300 + 300*100 + 100*10
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "final_state_dict.pt", "layer_density.csv"} <= artifacts


@needs_mnist
def test_pmp_run_ends_at_exact_sparsity_following_the_schedule(train_run):
    train_run(*TINY, "trainer.epochs=4", "pruner=pmp", "sparsity=0.9", "schedule.end=0.75",
              "schedule.update_frequency=1")
    (run,) = runs_of(train_run.uri)
    assert run.info.status == "FINISHED"
    assert run.data.metrics[rec.NUM_ZEROS] == 239_580  # 0.9 * 266,200
    client = MlflowClient(train_run.uri)
    by_step = {m.step: m.value for m in client.get_metric_history(run.info.run_id, rec.SPARSITY)}
    # 10 steps an epoch, the ramp ends at step 0.75 * 40 = 30: a linear ramp from 0 is at
    # 10/30, 20/30, 30/30 of 0.9 after epochs 1-3 (79,860, 159,720, 239,580 of 266,200 weights)
    assert [by_step[s] for s in (10, 20, 30, 40)] == pytest.approx([0.3, 0.6, 0.9, 0.9], abs=1e-12)
    # a point per mask update: update_frequency=1 moves the mask after each of steps 1..30, and
    # step k of the ramp prunes round(0.9 * 266,200 * k / 30) weights (the pinned rounding rule)
    assert sorted(by_step) == list(range(1, 31)) + [40]
    assert by_step[7] == pytest.approx(int(0.9 * 266_200 * 7 / 30 + 0.5) / 266_200, abs=1e-9)
    updates = client.get_metric_history(run.info.run_id, rec.MASK_UPDATES)
    assert sorted((m.step, m.value) for m in updates) == [(k, float(k)) for k in range(1, 31)] + [(40, 30.0)]
    assert run.data.metrics[rec.MASK_UPDATES] == 30
    # best_test_acc only counts epochs on the final mask (epochs 3 and 4)
    assert run.data.metrics[rec.BEST_EPOCH] >= 3


@pytest.mark.slow
@needs_mnist
def test_two_job_multirun_gives_two_runs(train_cli):
    proc = train_cli("-m", *TINY, "trainer.epochs=1", "pruner=pmp", "sparsity=0.5,0.9")
    runs = runs_of(train_cli.uri)
    assert sorted(r.data.params["sparsity"] for r in runs) == ["0.5", "0.9"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert "#1" in proc.stderr + proc.stdout


@pytest.mark.slow
@needs_mnist
def test_out_of_the_box_sweep_gives_four_runs(train_cli):
    train_cli("-m", *TINY, "trainer.epochs=1", "pruner=pmp", "sparsity=0.5,0.9", "seed=0,1")
    assert len(runs_of(train_cli.uri)) == 4


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("pruner=pmp", "sparsity=1.5"), "sparsity=1.5 is impossible"),
        (("model=alexnet",), "model has no option alexnet"),
        (("trainer.epochs=abc",), "takes a whole number"),
        (("pruner=pmp", "sparsity=0.9", "schedule.end=1.2"), "past the end of training"),
        (("tracking.system_metrics_interval_s=0",), "tracking.system_metrics_interval_s=0: sample every N > 0 seconds"),
    ],
)
def test_bad_input_fails_clearly_and_leaves_no_running_run(args, needle, tmp_path, monkeypatch, mlflow_uri, capsys):
    """`python -m repro.train` passes the same gate as the console script: one line, exit 2,
    the store untouched (no run at all, so none RUNNING)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    with pytest.raises(SystemExit) as info:
        cli.gate([*TINY, *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.splitlines()) == 1
    assert runs_of(mlflow_uri) == []


def test_missing_data_offline_fails_clearly(train_run, tmp_path):
    """A data path that holds no copy is refused before any run exists (fixing the path is the
    user's next step, and it must not meet a FAILED run of the same identity)."""
    outcome = train_run(*TINY, f"data.root={tmp_path / 'nowhere'}", check=False)
    assert outcome.code == 2
    assert "no copy of mnist" in outcome.stderr and "REPRO_DATA_DIR" in outcome.stderr
    assert runs_of(train_run.uri) == []
