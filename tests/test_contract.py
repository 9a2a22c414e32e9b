"""The contract every registered pruning method meets, run through the real entry point on a tiny
LeNet-300-100 run (MNIST subset, 2 epochs of 4 steps): the run ends FINISHED; the number of zeros
follows the pinned rule; after every optimizer step every masked weight is exactly 0.0; a method
that declares monotone masks never revives a weight, and one that regrows logs its regrowth; a
run crashed mid-epoch and run again ends with the numbers of an uninterrupted run; the same
command once more is skipped. A new method gets these tests by registering (methods whose
defaults do nothing within 8 steps get a shorter cadence in ``TINY``).
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import torch
from mlflow.tracking import MlflowClient

from repro import records as rec
from repro.engine import Engine
from repro.pruning import methods
from tests.conftest import needs_mnist, runs_of
from tests.test_faults import Crash, arm, crash

pytestmark = needs_mnist

#: 400 images in batches of 100: 4 steps an epoch, 8 in all
ARGS = ("model=lenet300", "data=mnist", "data.download=false", "data.train_subset=400", "data.test_subset=200",
        "trainer.batch_size=100", "trainer.epochs=2", "trainer.threads=1", "sparsity=0.5",
        "schedule.update_frequency=2", "schedule.end=0.6")
#: LeNet-300-100's prunable weights (784*300 + 300*100 + 100*10) and the zeros at 50%: floor(0.5 N + 0.5)
N_PRUNABLE = 266_200
ZEROS_AT_HALF = 133_100
#: zeros of the saved mask mask_from retrains (the first 1000 weights of fc1)
SOURCE_ZEROS = 1000
#: per-method overrides where the defaults do nothing in 8 steps
TINY = {"rigl": ("pruner.delta_t=2",), "oneshot": ("pruner.finetune_epochs=1",)}
FINALS = (rec.FINAL_TEST_ACC, rec.FINAL_TEST_LOSS, rec.NUM_ZEROS, rec.FINAL_SPARSITY, rec.COST_TRAIN_FLOPS)
HISTORIES = (rec.TRAIN_LOSS, rec.TEST_ACC, rec.SPARSITY)


def _args(name: str, tmp_path) -> list[str]:
    extra = list(TINY.get(name, ()))
    if name == "mask_from":
        source = tmp_path / "source_masks.pt"
        if not source.exists():
            mask = torch.ones(300, 784)
            mask.view(-1)[:SOURCE_ZEROS] = 0.0
            torch.save({"fc1.weight_mask": mask, "fc2.weight_mask": torch.ones(100, 300),
                        "fc3.weight_mask": torch.ones(10, 100)}, source)
        extra.append(f"pruner.source={source}")
    return [*ARGS, f"pruner={name}", *extra]


def _expected_zeros(name: str) -> int:
    cls = methods.REGISTRY[name]
    if not cls.uses_masks:
        return 0
    if name == "mask_from":
        return SOURCE_ZEROS
    return ZEROS_AT_HALF


class Watch:
    """After every optimizer step (where the loop sets the next step's learning rate): masked weights
    that are not zero, and weights revived since the previous step."""

    def __init__(self) -> None:
        self.steps = 0
        self.leaked = 0
        self.revived = 0
        self.prev: list[torch.Tensor] | None = None

    def install(self, monkeypatch) -> None:
        real = Engine.set_lr

        def set_lr(engine: Engine, step: int) -> None:
            real(engine, step)
            if not hasattr(engine, "ctx") or step == 0:
                return
            self.steps += 1
            masks = engine.masks
            self.leaked += sum(int(((w != 0) & (m == 0)).sum()) for w, m in zip(masks.weights, masks.masks))
            now = masks.state()
            if self.prev is not None:
                self.revived += sum(int(((a == 0) & (b != 0)).sum()) for a, b in zip(self.prev, now))
            self.prev = now

        monkeypatch.setattr(Engine, "set_lr", set_lr)


def _result(uri: str) -> dict[str, Any]:
    runs = [r for r in runs_of(uri) if rec.PARENT_RUN_TAG not in r.data.tags]
    assert len(runs) == 1, [r.info.status for r in runs]
    (run,) = runs
    client = MlflowClient(uri)
    history = {k: sorted({(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)})
               for k in (*HISTORIES, rec.REGROWN)}
    return {"status": run.info.status, "finals": {k: run.data.metrics[k] for k in FINALS}, "history": history}


@pytest.fixture(scope="module")
def references() -> dict[str, dict[str, Any]]:
    return {}


@pytest.mark.parametrize("name", sorted(methods.REGISTRY))
def test_a_method_meets_the_contract(name, train_run, monkeypatch, references):
    cls = methods.REGISTRY[name]
    watch = Watch()
    watch.install(monkeypatch)
    train_run(*_args(name, train_run.cwd))
    monkeypatch.undo()
    got = _result(train_run.uri)
    assert got["status"] == "FINISHED"
    assert got["finals"][rec.NUM_ZEROS] == _expected_zeros(name)
    assert watch.steps >= 8 and watch.leaked == 0
    if cls.monotone:
        assert watch.revived == 0
    else:
        assert watch.revived > 0
        assert any(v > 0 for _, v in got["history"][rec.REGROWN])
    references[name] = got
    # the same command again: skipped (no optimizer step), still the one run with the same numbers
    rerun = Watch()
    rerun.install(monkeypatch)
    train_run(*_args(name, train_run.cwd))
    monkeypatch.undo()
    assert rerun.steps == 0
    assert _result(train_run.uri) == got


#: a crash and a resume cost two more runs per method: in the fast suite for the methods whose masks
#: regrow (their mask updates happen mid-epoch, between checkpoints), for the others with make test-slow
#: (test_faults crashes PMP at every point in the fast suite)
CRASH_CASES = [name if not methods.REGISTRY[name].monotone else pytest.param(name, marks=pytest.mark.slow)
               for name in sorted(methods.REGISTRY)]


@pytest.mark.parametrize("name", CRASH_CASES)
def test_a_method_crashed_mid_epoch_resumes_to_the_uninterrupted_numbers(name, train_run, monkeypatch, references,
                                                                           mlflow_template, tmp_path):
    if name not in references:  # run alone (-k, a mutant): the uninterrupted run in a store of its own
        reference_db = tmp_path / "reference.db"
        shutil.copy(mlflow_template, reference_db)
        train_run(*_args(name, train_run.cwd), "trainer.checkpoint_dir=reference-checkpoints",
                  uri=f"sqlite:///{reference_db}")
        references[name] = _result(f"sqlite:///{reference_db}")
    undo = arm("mid_epoch:2", crash, monkeypatch.setattr)
    try:
        with pytest.raises(Crash):
            train_run(*_args(name, train_run.cwd))
    finally:
        undo()
        monkeypatch.undo()
    train_run(*_args(name, train_run.cwd))
    assert _result(train_run.uri) == references[name]
