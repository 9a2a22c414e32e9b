"""LTH chains and cost through the run entry point (in-process): one nested run per target,
cumulative cost; and a chain killed between rounds (a real process, slow) that resumes to the
same numbers."""

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SHARED_DATA, needs_mnist, repro_train, runs_of

TINY = ("model=lenet300", "data=mnist", "trainer.epochs=1", "trainer.batch_size=100", "data.train_subset=2000",
        "data.test_subset=1000", "data.download=false")


def children(uri):
    return sorted((r for r in runs_of(uri) if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.data.params["sparsity"])


@needs_mnist
def test_lth_chain_leaves_one_run_per_target_with_cumulative_cost(train_run):
    train_run(*TINY, "pruner=lth", "pruner.targets=[0.5,0.9]")
    runs = runs_of(train_run.uri)
    (chain,) = [r for r in runs if r.data.tags.get("kind") == "chain"]
    kids = children(train_run.uri)
    assert [k.data.params["sparsity"] for k in kids] == ["0.5", "0.9"]
    assert all(k.info.status == "FINISHED" and k.data.tags["mlflow.parentRunId"] == chain.info.run_id for k in kids)
    n = 266_200
    assert [k.data.metrics["mask/zeros"] for k in kids] == [round(0.5 * n), 239_580]
    # 0.5 is reached after 4 rounds (0.2, 0.36, 0.488, 0.5): 5 cycles; 0.9 after 12 rounds
    assert [k.data.metrics["cost/cycles"] for k in kids] == [5, 13]
    assert kids[0].data.metrics["cost/train_flops"] < kids[1].data.metrics["cost/train_flops"]
    assert chain.info.status == "FINISHED"


@needs_mnist
def test_pmp_and_oneshot_log_their_cost(train_run):
    for pruner in ("pmp", "oneshot"):
        train_run(*TINY, f"pruner={pruner}", "sparsity=0.9")
    runs = {r.data.params["pruner.name"]: r.data.metrics for r in runs_of(train_run.uri)}
    assert set(runs) == {"pmp", "oneshot"}
    for m in runs.values():
        assert m["cost/train_flops"] > 0 and m["cost/inference_flops"] > 0
    assert runs["oneshot"]["cost/epochs"] == 2 and runs["pmp"]["cost/epochs"] == 1
    # PMP prunes during its single cycle: cheaper than one dense cycle
    assert runs["pmp"]["cost/train_flops"] < runs["pmp"]["cost/dense_cycle_flops"]


@pytest.mark.slow
@needs_mnist
def test_lth_chain_killed_between_rounds_resumes_to_the_same_numbers(tmp_path, mlflow_template):
    import shutil

    args = (*TINY, "data.train_subset=6000", "pruner=lth", "pruner.targets=[0.5]")
    ref_db, work_db = tmp_path / "ref.db", tmp_path / "work.db"
    shutil.copy(mlflow_template, ref_db)
    shutil.copy(mlflow_template, work_db)
    (tmp_path / "ref").mkdir()
    (tmp_path / "work").mkdir()
    repro_train(*args, cwd=tmp_path / "ref", uri=f"sqlite:///{ref_db}")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work_db}", "REPRO_DATA_DIR": str(SHARED_DATA),
           "REPRO_CKPT_DIR": str(tmp_path / "work" / "checkpoints"), "REPRO_CACHE_DIR": str(ROOT / ".cache" / "repro")}
    proc = subprocess.Popen([sys.executable, "-m", "repro.train", "trainer.progress=log", *args], cwd=tmp_path / "work",
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "LTH round 2" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    repro_train(*args, cwd=tmp_path / "work", uri=f"sqlite:///{work_db}")
    (ref,) = children(f"sqlite:///{ref_db}")
    (got,) = children(f"sqlite:///{work_db}")
    for key in ("final/test_acc", "mask/zeros", "cost/train_flops", "cost/cycles"):
        assert got.data.metrics[key] == ref.data.metrics[key], key
    assert len(runs_of(f"sqlite:///{work_db}")) == 2  # the chain and its one target: nothing duplicated
