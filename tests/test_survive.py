"""Runs that survive: SIGTERM ends a run KILLED, a resume may change keys outside the identity,
an epoch's metrics are logged before the checkpoint that ends it, a resumed success clears the
old failure. All in-process."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from repro import records
from repro.train import CONF_DIR


def _cfg(tmp_path, *extra: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=[f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", "data.download=false",
                                            f"trainer.checkpoint_dir={tmp_path / 'ck'}", *extra])


def _runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.get_experiment_by_name("repro")
    return client.search_runs([exp.experiment_id], run_view_type=3)


def test_sigterm_ends_the_run_killed_and_exits_143(tmp_path, monkeypatch, mlflow_template):
    import shutil

    from repro import train as train_mod

    shutil.copy(mlflow_template, tmp_path / "m.db")

    def preempted(cfg, spec, tracker):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the run")

    monkeypatch.setattr(train_mod, "train", preempted)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_:
        train_mod.run(_cfg(tmp_path))
    assert exit_.value.code == 143
    (run,) = _runs(tmp_path)
    assert run.info.status == "KILLED" and run.data.tags[records.FAILURE_TAG] == "terminated (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the run's only


def test_a_resume_keeps_the_first_params_and_notes_changed_cosmetic_ones(mlflow_uri):
    from repro.tracking import Tracker

    first = Tracker(mlflow_uri, "repro")
    rid = first.start("abc", "r", {})
    first.log_params({"trainer.threads": "2", "seed": "0"})
    first.end("FAILED", "killed")
    again = Tracker(mlflow_uri, "repro")
    again.start("abc", "r", {}, resume_run_id=rid)
    again.log_params({"trainer.threads": "1", "seed": "0", "data.root": "/fixed"})  # MLflow refuses a changed param
    again.end("FINISHED")
    run = MlflowClient(mlflow_uri).get_run(rid)
    assert run.data.params == {"trainer.threads": "2", "seed": "0", "data.root": "/fixed"}
    assert run.data.tags[records.RESUMED_WITH_PREFIX + "trainer.threads"] == "1"
    assert records.FAILURE_TAG not in run.data.tags and run.info.status == "FINISHED"


def test_an_epochs_metrics_are_logged_before_its_checkpoint(tmp_path):
    """A process that dies while writing epoch 2's checkpoint has already logged epoch 2."""
    from repro.engine import Engine
    from repro.pruning.methods import Method
    from tests.test_iterative import engine_for

    logged: list[int] = []
    eng = engine_for(Method(None, 0.0, None), epochs=3, checkpoint_path=tmp_path / "c.pt")
    eng.on_epoch = lambda metrics, step: logged.append(int(metrics[records.EPOCH]))
    real = Engine.save_checkpoint

    def dies_at_epoch_2(self):
        if self.state.epoch == 2:
            raise KeyboardInterrupt("killed while writing the checkpoint")
        real(self)

    Engine.save_checkpoint = dies_at_epoch_2
    try:
        with pytest.raises(KeyboardInterrupt):
            eng.run()
    finally:
        Engine.save_checkpoint = real
    assert logged == [1, 2]
    assert torch.load(tmp_path / "c.pt", weights_only=False)["loop"]["epoch"] == 1


def test_a_kill_while_logging_an_lth_target_leaves_no_running_child(mlflow_uri, monkeypatch):
    from repro.tracking import Tracker

    tracker = Tracker(mlflow_uri, "repro")
    parent = tracker.start("chain", "chain", {})

    def killed(self, text, filename):
        raise KeyboardInterrupt

    monkeypatch.setattr(Tracker, "log_text", killed)
    with pytest.raises(KeyboardInterrupt):
        tracker.log_child("chain:0.5", "chain-t0.5", {}, {"sparsity": "0.5"}, {"final_test_acc": 0.9}, texts={"a.csv": "x"})
    children = [r for r in _runs_of(mlflow_uri) if r.data.tags.get(records.PARENT_RUN_TAG) == parent]
    assert [c.info.status for c in children] == ["KILLED"]
    assert tracker.run_id == parent


def _runs_of(uri):
    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("repro").experiment_id], run_view_type=3)


def test_a_signal_during_the_runs_end_is_held_off_then_delivered():
    """The end of a run is written whole, but a SIGTERM that arrives meanwhile is not lost."""
    from repro.train import _shielded

    got: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        with _shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            assert got == []  # held off while the end is written
        assert got == [signal.SIGTERM]  # delivered afterwards
    finally:
        signal.signal(signal.SIGTERM, before)
