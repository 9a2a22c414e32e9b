"""Runs that survive: SIGTERM ends a run KILLED, a resume may change keys outside the identity,
an epoch's metrics are logged before the checkpoint that ends it, a resumed success clears the
old failure; one process owns a run; an unusable store, a half-migrated schema, an unreadable
checkpoint or a truncated data file is met with one line or a fresh start. In-process, except
the two-process lock test (slow). Kills at named points are in tests/test_faults.py."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from repro import records
from repro.train import CONF_DIR
from tests.conftest import SHARED_DATA, needs_mnist


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
    eng.on_epoch = lambda metrics, step: logged.append(step // eng.steps_per_epoch)
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


def test_a_target_of_a_chain_launched_by_a_sweep_nests_under_the_chain_not_the_sweep(mlflow_uri):
    """A sweep's job carries the sweep as its parent; the targets the job logs must still nest
    under the job (the chain run), or the sweep counts them as jobs and the chain has no targets."""
    from repro.tracking import Tracker

    tracker = Tracker(mlflow_uri, "repro")
    job_tags = {records.PARENT_RUN_TAG: "the-sweep-run", records.SWEEP_TAG: "sweep-1"}
    chain = tracker.start("chain", "chain", job_tags)
    tracker.log_child("chain:0.5", "chain-t0.5", dict(job_tags), {"sparsity": "0.5"}, {"final/test_acc": 90.0})
    children = [r for r in _runs_of(mlflow_uri) if r.data.tags.get(records.IDENTITY_TAG) == "chain:0.5"]
    assert [c.data.tags[records.PARENT_RUN_TAG] for c in children] == [chain]


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


# ----------------------------------------------------------------------------- one owner per run
def test_a_run_lock_has_one_holder_and_names_it(tmp_path):
    from repro import runlock

    held = runlock.acquire(tmp_path, "abc")
    with pytest.raises(runlock.RunBusy, match=rf"run abc is being trained by process {os.getpid()} \(lock "):
        runlock.acquire(tmp_path, "abc")
    other = runlock.acquire(tmp_path, "def")  # another identity is another lock
    held.release()
    other.release()
    assert list(tmp_path.iterdir()) == []  # released locks leave no files
    with runlock.acquire(tmp_path, "abc"):
        pass


def test_a_run_lock_dies_with_its_holder(tmp_path):
    """SIGKILL leaves the lock file but not the lock: the kernel drops a dead process's flock."""
    import subprocess
    import sys

    code = ("import os, signal, sys\nfrom repro import runlock\nrunlock.acquire(sys.argv[1], 'abc')\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and (tmp_path / "abc.lock").is_file()
    from repro import runlock

    with runlock.acquire(tmp_path, "abc"):
        assert (tmp_path / "abc.lock").read_text() == f"{os.getpid()}\n"


@needs_mnist
def test_a_run_whose_lock_is_held_is_refused_before_any_run_or_checkpoint(tmp_path, capsys, mlflow_template):
    import shutil

    from repro import runlock, train

    shutil.copy(mlflow_template, tmp_path / "m.db")
    cfg = _cfg(tmp_path, "model=lenet300", "data=mnist", "trainer.epochs=1")
    identity, _, _ = train.identities(cfg, train.resolve_runtime(cfg))
    with runlock.acquire(tmp_path / "ck", identity):
        with pytest.raises(SystemExit) as exit_:
            train.run(cfg)
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and f"run {identity} is being trained by process {os.getpid()}" in line
    assert _runs(tmp_path) == [] and list((tmp_path / "ck").iterdir()) == []


@needs_mnist
@pytest.mark.slow
def test_two_identical_commands_at_once_train_one_run(tmp_path, mlflow_template):
    """The second command is refused while the first trains (held at its first epoch's metrics
    until the second is done); the first then finishes alone."""
    import shutil
    import subprocess
    import time

    from tests.test_faults import child_command

    shutil.copy(mlflow_template, tmp_path / "m.db")
    uri, release = f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "release"
    argv, env = child_command("before_metrics:1", uri, tmp_path, REPRO_FAULT_HOLD=str(release))
    first = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list((tmp_path / "checkpoints").glob("*.lock")) and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        argv, env = child_command(None, uri, tmp_path)
        second = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        release.touch()
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert second.returncode == 2, second.stderr[-2000:]
    lines = [x for x in second.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and f"is being trained by process {first.pid} (lock " in lines[0], second.stderr[-2000:]
    (run,) = _runs(tmp_path)
    assert run.info.status == "FINISHED"
    # one point per epoch, each logged once, at step = optimizer steps so far
    steps_per_epoch = run.data.metrics[records.COST_ITERATIONS] / 3
    assert [m.step for m in MlflowClient(f"sqlite:///{tmp_path / 'm.db'}").get_metric_history(
        run.info.run_id, records.TEST_ACC)] == [steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch]


# ----------------------------------------------------------------------------- unusable stores
def _refused(tmp_path, capsys, uri: str) -> str:
    """Run a command against ``uri``; it must exit 2 with one ``error:`` line and write nothing."""
    from repro import train

    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_:
        train.run(_cfg(tmp_path, "model=lenet300", "data=mnist", "trainer.epochs=1", f"tracking.uri={uri}"))
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no checkpoint folder, lock or store
    return line


def test_an_unreachable_tracking_server_fails_in_seconds_with_one_line(tmp_path, capsys):
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    line = _refused(tmp_path, capsys, f"http://127.0.0.1:{port}")
    assert time.monotonic() - started < 15
    assert f"http://127.0.0.1:{port}" in line and "mlflow server" in line and "tracking=sqlite" in line


def test_a_directory_as_the_sqlite_file_is_refused(tmp_path, capsys):
    (tmp_path / "store").mkdir()
    assert "is a directory" in _refused(tmp_path, capsys, f"sqlite:///{tmp_path / 'store'}")


def test_a_file_that_is_not_sqlite_is_refused(tmp_path, capsys):
    (tmp_path / "m.db").write_text("not a database\n")
    assert "is not an SQLite file" in _refused(tmp_path, capsys, f"sqlite:///{tmp_path / 'm.db'}")
    assert (tmp_path / "m.db").read_text() == "not a database\n"


@pytest.mark.parametrize("denied", ["file", "folder"])
def test_a_read_only_store_or_folder_is_refused(tmp_path, capsys, monkeypatch, mlflow_template, denied):
    """Read-only by mode bits; as root (who ignores them) by os.access answering as for a user."""
    import shutil

    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "m.db"
    if denied == "file":
        shutil.copy(mlflow_template, db)
    target = db if denied == "file" else folder
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == target and mode & os.W_OK
                            else real(p, mode, **kw))
    else:
        target.chmod(0o555)
    try:
        line = _refused(tmp_path, capsys, f"sqlite:///{db}")
    finally:
        target.chmod(0o755)
    assert str(target) in line and ("read-only" in line if denied == "file" else "cannot write the folder" in line)


# ----------------------------------------------------------------------------- half-migrated schema
def _half_migrated(path: Path, statements: int = 800) -> None:
    """What MLflow's own first-time migration, killed in place, leaves (as before issue 21)."""
    import sqlalchemy
    from mlflow.store.db import utils as db_utils

    from tests.test_faults import Crash, arm, crash

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    undo = arm(f"schema:{statements}", crash)
    try:
        with pytest.raises(Crash):
            db_utils._initialize_tables(engine)
    finally:
        undo()
        engine.dispose()


def test_a_half_migrated_store_without_runs_is_set_aside_and_rebuilt(tmp_path, caplog):
    from repro.tracking import Tracker

    db = tmp_path / "m.db"
    _half_migrated(db)
    tracker = Tracker(f"sqlite:///{db}", "repro")
    tracker.start("abc", "r", {})
    tracker.end("FINISHED")
    (aside,) = tmp_path.glob("m.db.half-migrated-*")
    assert str(db) in caplog.text and str(aside) in caplog.text
    assert [r.info.status for r in _runs_of(f"sqlite:///{db}")] == ["FINISHED"]


def test_a_store_with_runs_and_a_broken_schema_is_refused_and_left_alone(tmp_path, mlflow_uri):
    import sqlite3

    from repro.tracking import StoreError, Tracker

    tracker = Tracker(mlflow_uri, "repro")
    tracker.start("abc", "r", {})
    tracker.end("FINISHED")
    db = Path(mlflow_uri[len("sqlite:///"):])
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE datasets")  # a table missing that no migration will bring back
    before = db.read_bytes()
    with pytest.raises(StoreError, match=rf"the MLflow store {db} \(\d+ records\) .*restore it from a backup"):
        Tracker(mlflow_uri, "repro")
    assert db.read_bytes() == before and not [p for p in tmp_path.iterdir() if "migrating" in p.name]


# ----------------------------------------------------------------------------- unreadable files
@pytest.mark.parametrize("damage", ["empty", "truncated", "foreign", "text"])
def test_an_unreadable_checkpoint_is_set_aside_with_a_warning_naming_both_paths(tmp_path, caplog, damage):
    from repro.engine import checkpoint

    path = tmp_path / "abc.pt"
    checkpoint.save_atomic({k: torch.zeros(1000) for k in checkpoint.KEYS}, path)
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-300])
    elif damage == "foreign":
        torch.save({"state_dict": torch.zeros(3)}, path)
    else:
        path.write_text("hello\n")
    aside = checkpoint.set_aside_if_unreadable(path)
    assert aside is not None and aside.name.startswith("abc.pt.corrupt-") and aside.is_file() and not path.exists()
    assert str(path) in caplog.text and str(aside) in caplog.text
    checkpoint.save_atomic({k: torch.zeros(3) for k in checkpoint.KEYS}, path)
    assert checkpoint.set_aside_if_unreadable(path) is None and path.is_file()  # a good one stays


def test_loading_an_unreadable_checkpoint_names_it(tmp_path):
    from repro.engine import checkpoint

    path = tmp_path / "abc.pt"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(checkpoint.CorruptCheckpoint, match=rf"checkpoint {path} cannot be read .*moved it to "):
        checkpoint.load(path, torch.device("cpu"))
    assert not path.exists()


@needs_mnist
def test_a_truncated_checkpoint_makes_the_rerun_start_afresh_not_fail(tmp_path, monkeypatch, mlflow_template):
    import shutil

    from repro import train
    from tests.test_faults import ARGS, Crash, arm, crash

    shutil.copy(mlflow_template, tmp_path / "m.db")
    cfg = _cfg(tmp_path, *ARGS, "trainer.progress=none")
    arm("after_checkpoint:1", crash, monkeypatch.setattr)
    with pytest.raises(Crash):
        train.run(cfg)
    monkeypatch.undo()
    (ckpt,) = (tmp_path / "ck").glob("*.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    train.run(cfg)
    (run,) = _runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert len(list((tmp_path / "ck").glob("*.pt.corrupt-*"))) == 1


@needs_mnist
def test_a_truncated_mnist_file_is_refused_naming_it_and_its_sizes(tmp_path, capsys):
    from repro import train

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (SHARED_DATA / "MNIST" / "raw").iterdir():
        (raw / f.name).symlink_to(f)
    bad = raw / "t10k-labels-idx1-ubyte"
    bad.unlink()
    bad.write_bytes((SHARED_DATA / "MNIST" / "raw" / bad.name).read_bytes()[:5008])
    with pytest.raises(SystemExit) as exit_:
        train.run(_cfg(tmp_path, "model=lenet300", "data=mnist", f"data.root={tmp_path / 'data'}"))
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and str(bad) in line
    assert "shape (10000,), 10008 bytes, and it holds 5008 bytes" in line
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "ck").exists()


def test_an_idx_file_of_the_wrong_shape_is_refused(tmp_path):
    from repro import data

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, dims in (("train-images-idx3-ubyte", (4, 28, 28)), ("train-labels-idx1-ubyte", (4,)),
                       ("t10k-images-idx3-ubyte", (2, 32, 32)), ("t10k-labels-idx1-ubyte", (2,))):
        header = bytes((0, 0, 8, len(dims))) + b"".join(d.to_bytes(4, "big") for d in dims)
        (raw / stem).write_bytes(header + bytes(int(np.prod(dims))))
    assert data.locate("mnist", tmp_path) == "official"  # sizes agree with the headers
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte holds images of shape \(2, 32, 32\), "
                                             r"expected \(N, 28, 28\)"):
        data.load("mnist", tmp_path, download=False)
