"""repro-train end to end in subprocesses: MLflow records, multiruns, PMP sparsity, bad input."""

import pytest

from repro.pruning.masks import pruned_count
from repro.pruning.schedules import sparsity_at
from tests.conftest import needs_mnist, runs_of

TINY = ("model=lenet300", "data=mnist", "trainer.epochs=2", "trainer.batch_size=100", "data.train_subset=1000",
        "data.test_subset=500", "data.download=false")


@needs_mnist
def test_dense_run_is_recorded_with_params_tags_and_epoch_metrics(train_cli):
    train_cli(*TINY, "pruner=dense")
    (run,) = runs_of(train_cli.uri)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "lenet300"
    assert run.data.params["trainer.epochs"] == "2"
    tags = run.data.tags
    for key in ("git_commit", "git_dirty", "torch_version", "device", "data_source", "hydra_overrides", "repro.identity"):
        assert tags.get(key), key
    assert tags["data_source"] == "official" and tags["device"] == "cpu"
    assert "pruner=dense" in tags["hydra_overrides"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(train_cli.uri)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time", "samples_per_s", "sparsity"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], key
    assert 0.5 < run.data.metrics["final_test_acc"] <= 1.0
    assert run.data.metrics["num_prunable"] == 266_200
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "final_state_dict.pt", "layer_density.csv"} <= artifacts


@needs_mnist
def test_pmp_run_ends_at_exact_sparsity_following_the_schedule(train_cli):
    train_cli(*TINY, "trainer.epochs=4", "pruner=pmp", "sparsity=0.9", "schedule.end=0.75",
              "schedule.update_frequency=1")
    (run,) = runs_of(train_cli.uri)
    assert run.info.status == "FINISHED"
    n = 266_200
    assert run.data.metrics["num_zeros"] == pruned_count(0.9, n)
    from mlflow.tracking import MlflowClient

    history = MlflowClient(train_cli.uri).get_metric_history(run.info.run_id, "sparsity")
    steps_per_epoch = 10
    end = round(0.75 * 4 * steps_per_epoch)
    for m in sorted(history, key=lambda m: m.step):
        target = sparsity_at("linear", min(m.step * steps_per_epoch / end, 1.0), 0.0, 0.9)
        assert m.value == pytest.approx(pruned_count(target, n) / n, abs=1e-12), m.step
    # best_test_acc only counts epochs on the final mask (epochs 3 and 4)
    assert run.data.metrics["best_epoch"] >= 3


@needs_mnist
def test_two_job_multirun_gives_two_runs(train_cli):
    proc = train_cli("-m", *TINY, "trainer.epochs=1", "pruner=pmp", "sparsity=0.5,0.9")
    runs = runs_of(train_cli.uri)
    assert sorted(r.data.params["sparsity"] for r in runs) == ["0.5", "0.9"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert "#1" in proc.stderr + proc.stdout


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
    ],
)
def test_bad_input_fails_clearly_and_leaves_no_running_run(train_cli, args, needle):
    proc = train_cli(*TINY, *args, check=False)
    assert proc.returncode != 0
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert all(r.info.status != "RUNNING" for r in runs_of(train_cli.uri))


def test_missing_data_offline_fails_clearly(train_cli, tmp_path):
    """A data path that holds no copy is refused before any run exists (fixing the path is the
    user's next step, and it must not meet a FAILED run of the same identity)."""
    proc = train_cli(*TINY, f"data.root={tmp_path / 'nowhere'}", check=False)
    assert proc.returncode == 2
    assert "no copy of mnist" in proc.stderr and "REPRO_DATA_DIR" in proc.stderr
    assert runs_of(train_cli.uri) == []
