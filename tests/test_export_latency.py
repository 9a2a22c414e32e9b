"""``repro-export --profile NAME --latency --log`` (issue 18): every FINISHED run of a profile is
exported and timed in this process, one after another, and its figures logged under the names of
repro/records.py; a second call skips runs already timed; bad input is one ``error:`` line, exit 2,
nothing logged. No timing is asserted: only that the figures are there, positive and consistent
with each other (images/s at batch 256 is 256 / the batch's median time, which the test cannot see,
so it checks what it can: a speedup is dense time over sparse time within a round)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from repro import records as rec
from repro.export.cli import main
from tests.test_export import pruned
from tests.test_report import _add_run

#: the metrics one timed run carries, named by the writer's module
LATENCY_METRICS = {rec.LATENCY_DENSE_B1_MS, rec.LATENCY_SPARSE_B1_MS, rec.LATENCY_SPEEDUP_B1, rec.LATENCY_DENSE_B256_IPS,
                   rec.LATENCY_SPARSE_B256_IPS, rec.LATENCY_SPEEDUP_B256, rec.LATENCY_THREADS, rec.LATENCY_ROUNDS,
                   rec.LATENCY_CSR_LAYERS}


@pytest.fixture
def client_exp(mlflow_uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    return client, client.get_experiment_by_name("repro").experiment_id


def _with_weights(client, rid: str, tmp_path: Path, sparsity: float) -> None:
    """The run's final_state_dict.pt, as repro-train logs it: a LeNet-300-100 with masks."""
    path = tmp_path / rid / rec.FINAL_STATE_ARTIFACT
    path.parent.mkdir(parents=True)
    torch.save(pruned("lenet300", 1.0, 1, sparsity).state_dict(), path)
    client.log_artifact(rid, str(path))


def _store(client, exp, tmp_path) -> dict[str, str]:
    """Two finished runs with weights (one exported at training: sizes logged), one failed, one with
    no weights, a nested LTH target run, and a finished run of another profile."""
    ids = {}
    ids["pmp"] = _add_run(client, exp, method="pmp", sparsity=0.9, final=0.97, start=1)
    ids["gmp"] = _add_run(client, exp, method="gmp", sparsity=0.98, final=0.96, start=2,
                          extra_metrics={rec.SIZE_SPARSE_BYTES: 123.0})
    ids["failed"] = _add_run(client, exp, method="snip", sparsity=0.9, final=None, status="FAILED", start=3)
    ids["no_weights"] = _add_run(client, exp, method="grasp", sparsity=0.9, final=0.9, start=4)
    ids["nested"] = _add_run(client, exp, method="lth", sparsity=0.9, final=0.9, start=5,
                             tags={rec.PARENT_RUN_TAG: ids["pmp"], rec.CYCLE_TAG: "3"})
    ids["other"] = _add_run(client, exp, method="pmp", sparsity=0.95, final=0.97, start=6, profile="other")
    for key, sparsity in (("pmp", 0.9), ("gmp", 0.98), ("failed", 0.9), ("nested", 0.9), ("other", 0.95)):
        _with_weights(client, ids[key], tmp_path, sparsity)
    return ids


def _history(client, rid: str) -> int:
    return len(client.get_metric_history(rid, rec.LATENCY_DONE))


def test_profile_latency_logs_each_finished_run_once_and_skips_it_next_time(mlflow_uri, tmp_path, client_exp, capsys):
    client, exp = client_exp
    ids = _store(client, exp, tmp_path)
    argv = ["--profile", "t", "--latency", "--log", "--tracking-uri", mlflow_uri, "--repeats", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 run(s) timed and logged, 2 skipped" in out, out
    assert "nested target run (LTH)" in out and f"run {ids['no_weights']} has no {rec.FINAL_STATE_ARTIFACT}" in out

    pmp = client.get_run(ids["pmp"]).data
    assert LATENCY_METRICS <= set(pmp.metrics), sorted(pmp.metrics)
    assert all(pmp.metrics[m] > 0 for m in LATENCY_METRICS)
    assert pmp.metrics[rec.LATENCY_THREADS] == torch.get_num_threads() and pmp.metrics[rec.LATENCY_ROUNDS] == 1
    assert pmp.metrics[rec.LATENCY_CSR_LAYERS] == 3  # fc1, fc2, fc3: every pruned Linear gets the CSR kernel
    assert f"torch {torch.__version__}" in pmp.tags[rec.LATENCY_MACHINE_TAG]
    # a run that trained without trainer.export gets the export's sizes too; one that had them keeps its own
    assert pmp.metrics[rec.SIZE_NONZERO_PARAMS] < pmp.metrics[rec.SIZE_PARAMS]
    gmp = client.get_run(ids["gmp"]).data
    assert LATENCY_METRICS <= set(gmp.metrics) and gmp.metrics[rec.SIZE_SPARSE_BYTES] == 123.0
    assert rec.SIZE_PARAMS not in gmp.metrics
    for key in ("failed", "no_weights", "nested", "other"):
        assert not {m for m in client.get_run(ids[key]).data.metrics if m.startswith(rec.LATENCY_PREFIX)}, key

    # again: nothing is timed or logged twice; --force times them again
    assert main(argv) == 0
    assert "0 run(s) timed, 4 skipped" in capsys.readouterr().out
    assert _history(client, ids["pmp"]) == 1 and _history(client, ids["gmp"]) == 1
    assert main([*argv, "--force"]) == 0
    assert _history(client, ids["pmp"]) == 2 and _history(client, ids["gmp"]) == 2


def test_profile_latency_without_log_logs_nothing(mlflow_uri, tmp_path, client_exp, capsys):
    client, exp = client_exp
    rid = _add_run(client, exp, method="pmp", sparsity=0.9, final=0.97)
    _with_weights(client, rid, tmp_path, 0.9)
    assert main(["--profile", "t", "--latency", "--tracking-uri", mlflow_uri, "--repeats", "1"]) == 0
    assert "timed   pmp-s0.9-seed0: batch 1 dense" in capsys.readouterr().out
    assert not [m for m in client.get_run(rid).data.metrics if m.startswith(rec.LATENCY_PREFIX)]


def _refused(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err


def test_profile_latency_bad_input_is_one_error_line_and_logs_nothing(mlflow_uri, tmp_path, client_exp, capsys):
    client, exp = client_exp
    rid = _add_run(client, exp, method="pmp", sparsity=0.9, final=0.97)
    _with_weights(client, rid, tmp_path, 0.9)
    base = ["--latency", "--log", "--tracking-uri", mlflow_uri]
    _refused(capsys, ["--profile", "nope", *base], "no FINISHED runs with profile 'nope'")
    _refused(capsys, ["--profile", "t", *base, "--experiment", "elsewhere"], "no FINISHED runs")
    _refused(capsys, ["--profile", "t", "--log", "--tracking-uri", mlflow_uri], "add --latency")
    _refused(capsys, [rid, "--profile", "t", *base], "not both")
    _refused(capsys, [rid, "--out", str(tmp_path / "x"), "--log", "--tracking-uri", mlflow_uri], "--profile only")
    _refused(capsys, ["--profile", "t", *base, "--repeats", "0"], "--repeats")
    db = tmp_path / "none.db"
    _refused(capsys, ["--profile", "t", "--latency", "--log", "--tracking-uri", f"sqlite:///{db}"], "no tracking store")
    assert not db.exists()
    assert not [m for m in client.get_run(rid).data.metrics if m.startswith(rec.LATENCY_PREFIX)]
    assert not (tmp_path / "x").exists()


def test_runs_timed_before_the_metric_namespaces_count_as_timed(mlflow_uri, client_exp, capsys):
    """An old store's ``latency_*`` metrics (flat names) mean the run was timed: not timed again."""
    client, exp = client_exp
    old_name = rec.LATENCY_DONE.replace("/", "_", 1)
    _add_run(client, exp, method="pmp", sparsity=0.9, final=0.97, start=1, extra_metrics={old_name: 1.0})
    assert main(["--profile", "t", "--latency", "--log", "--tracking-uri", mlflow_uri, "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "0 run(s) timed, 1 skipped" in out and "timed already" in out, out
