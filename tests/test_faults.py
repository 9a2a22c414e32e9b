"""Fault injection: a run killed at a named point, then the same command again, ends with one
run, not RUNNING, the final numbers and the full metric history of an uninterrupted run.

The points are patches armed by name (:func:`arm`). In a child process
(``REPRO_FAULT=<point> python -c DRIVER``) the process dies there by SIGKILL. In-process the
same points raise :class:`Crash`, a BaseException that no handler of the suite catches, so the
run is left as a kill leaves it: RUNNING, with whatever was written so far.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from repro import records as rec
from tests.conftest import ROOT, SHARED_DATA, needs_mnist, runs_of

#: a tiny run: 6 steps an epoch, 3 epochs, PMP pruning moving through them
ARGS = ("model=lenet300", "data=mnist", "data.download=false", "data.train_subset=600", "data.test_subset=500",
        "trainer.batch_size=100", "trainer.epochs=3", "trainer.threads=1", "pruner=pmp", "sparsity=0.9",
        "schedule.end=0.6")
FINALS = (rec.FINAL_TEST_ACC, rec.FINAL_TEST_LOSS, rec.BEST_TEST_ACC, rec.NUM_ZEROS, rec.FINAL_SPARSITY)
HISTORIES = (rec.TRAIN_LOSS, rec.TEST_ACC, rec.SPARSITY, rec.LR)
#: SQL statements into the first-time schema creation (about 1700 in all) where a kill is tried;
#: 800 is where MLflow's in-place migration, killed, left a store no client could open
SCHEMA_STATEMENTS = (5, 100, 800, 1600)


class Crash(BaseException):
    """The in-process stand-in for SIGKILL: nothing in the suite catches it."""


def crash() -> None:
    raise Crash


def sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hold() -> None:
    """Wait at the point until the file $REPRO_FAULT_HOLD exists (a run kept busy for a test)."""
    release = Path(os.environ["REPRO_FAULT_HOLD"])
    while not release.exists():
        time.sleep(0.05)


# ----------------------------------------------------------------------------- the points
Patch = Callable[[Any, str, Any], None]


def _schema(die: Callable[[], None], patch: Patch, n: int) -> Callable[[], None]:
    """Die at the ``n``-th SQL statement the process sends (the first are the schema's)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    count = [0]

    def statement(*args: Any) -> None:
        count[0] += 1
        if count[0] == n:
            die()

    event.listen(Engine, "before_cursor_execute", statement)
    return lambda: event.remove(Engine, "before_cursor_execute", statement)


def _run_created(die: Callable[[], None], patch: Patch, n: int) -> None:
    """Die right after MLflow created the run (its identity tag is in, the other tags are not)."""
    real = MlflowClient.create_run

    def create_run(self, *args: Any, **kwargs: Any):
        run = real(self, *args, **kwargs)
        die()
        return run

    patch(MlflowClient, "create_run", create_run)


def _mid_epoch(die: Callable[[], None], patch: Patch, n: int) -> None:
    """Die after 3 batches of epoch ``n`` (1-based)."""
    from repro.data import Batches

    real = Batches.epoch

    def epoch(self, seed: int, index: int, start: int = 0):
        for i, batch in enumerate(real(self, seed, index, start)):
            if index + 1 == n and i == 3:
                die()
            yield batch

    patch(Batches, "epoch", epoch)


def _after_checkpoint(die: Callable[[], None], patch: Patch, n: int) -> None:
    """Die right after the ``n``-th checkpoint is written."""
    from repro.engine import checkpoint

    real, saved = checkpoint.save_atomic, [0]

    def save_atomic(obj: Any, path: Path) -> None:
        real(obj, path)
        saved[0] += 1
        if saved[0] == n:
            die()

    patch(checkpoint, "save_atomic", save_atomic)


def _before_metrics(die: Callable[[], None], patch: Patch, n: int) -> None:
    """Die as epoch ``n``'s metrics are about to be logged."""
    from repro.tracking import Tracker

    real = Tracker.log_metrics
    epochs = [0]

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if rec.TRAIN_LOSS in metrics:  # an epoch's metrics (the step counts optimizer steps)
            epochs[0] += 1
            if epochs[0] == n:
                die()
        real(self, metrics, step)

    patch(Tracker, "log_metrics", log_metrics)


def _finished(die: Callable[[], None], patch: Patch, n: int) -> None:
    """Die as the run's FINISHED status is about to be written (all else is logged)."""
    real = MlflowClient.set_terminated

    def set_terminated(self, run_id: str, status: str | None = None, *args: Any, **kwargs: Any) -> None:
        if status == "FINISHED":
            die()
        real(self, run_id, status, *args, **kwargs)

    patch(MlflowClient, "set_terminated", set_terminated)


POINTS: dict[str, tuple[Callable[..., Any], int]] = {
    "schema": (_schema, 800),
    "run_created": (_run_created, 1),
    "mid_epoch": (_mid_epoch, 2),
    "after_checkpoint": (_after_checkpoint, 2),
    "before_metrics": (_before_metrics, 2),
    "finished": (_finished, 1),
}


def arm(fault: str, die: Callable[[], None], patch: Patch = setattr) -> Callable[[], None]:
    """Make this process ``die`` at ``fault`` (``point`` or ``point:n``); returns what disarms it
    (a patch made through ``patch``, e.g. monkeypatch.setattr, is undone by its owner)."""
    point, _, n = fault.partition(":")
    install, default = POINTS[point]
    undo = install(die, patch, int(n) if n else default)
    return undo or (lambda: None)


#: the child process: arm REPRO_FAULT (if set) to SIGKILL, or to wait there while $REPRO_FAULT_HOLD
#: names a file that does not exist yet, then go through the repro-train front door
DRIVER = """
import os, sys
from tests.test_faults import arm, hold, sigkill
if os.environ.get("REPRO_FAULT"):
    arm(os.environ["REPRO_FAULT"], hold if os.environ.get("REPRO_FAULT_HOLD") else sigkill)
from repro.cli import gate, handover
if gate(sys.argv[1:]):
    handover(sys.argv[1:])
"""


# ----------------------------------------------------------------------------- helpers
def _cfg(uri: str, ckpt: Path, *extra: str):
    from repro.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=[*ARGS, f"tracking.uri={uri}", f"trainer.checkpoint_dir={ckpt}",
                                            "trainer.progress=none", *extra])


def _result(uri: str) -> dict[str, Any]:
    """The one run of the store: its status, final metrics and per-epoch history."""
    runs = runs_of(uri)
    assert len(runs) == 1, [r.info.status for r in runs]
    (run,) = runs
    client = MlflowClient(uri)
    history = {k: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, k),
                                                      key=lambda m: (m.step, m.timestamp))] for k in HISTORIES}
    return {"status": run.info.status, "finals": {k: run.data.metrics[k] for k in FINALS}, "history": history}


def child_command(fault: str | None, uri: str, work: Path, **env: str) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of the command in a child process, with ``fault`` armed (None: none)."""
    environ = {**os.environ, "MLFLOW_TRACKING_URI": uri, "REPRO_CKPT_DIR": str(work / "checkpoints"),
               "REPRO_DATA_DIR": str(SHARED_DATA), "REPRO_CACHE_DIR": str(ROOT / ".cache" / "repro"),
               "PYTHONPATH": str(ROOT), "REPRO_FAULT": fault or "", **env}
    return [sys.executable, "-c", DRIVER, "trainer.progress=none", *ARGS], environ


def _child(fault: str | None, uri: str, work: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    argv, env = child_command(fault, uri, work)
    return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mlflow_template) -> dict[str, Any]:
    """The uninterrupted run, in-process."""
    from repro.train import run

    tmp = tmp_path_factory.mktemp("reference")
    shutil.copy(mlflow_template, tmp / "m.db")
    uri = f"sqlite:///{tmp / 'm.db'}"
    run(_cfg(uri, tmp / "ck"))
    result = _result(uri)
    # 6 optimizer steps an epoch: the epochs end at steps 6, 12, 18
    assert result["status"] == "FINISHED" and [s for s, _ in result["history"][rec.TEST_ACC]] == [6, 12, 18]
    return result


def _assert_same(got: dict[str, Any], reference: dict[str, Any]) -> None:
    assert got["status"] == "FINISHED"
    assert got["finals"] == reference["finals"]
    for key, ref in reference["history"].items():
        # one value per epoch; a step logged again after a resume has the same value
        assert sorted(set(got["history"][key])) == ref, key


# ----------------------------------------------------------------------------- in-process
@needs_mnist
@pytest.mark.parametrize("point", [pytest.param(p, marks=pytest.mark.slow) if p == "schema" else p for p in POINTS])
def test_a_crash_at_each_point_then_the_same_command_ends_as_an_uninterrupted_run(point, tmp_path, monkeypatch,
                                                                                   mlflow_template, reference):
    from repro.train import run

    db = tmp_path / "m.db"
    if point != "schema":  # the schema point needs a store created by this run
        shutil.copy(mlflow_template, db)
    uri, ckpt = f"sqlite:///{db}", tmp_path / "ck"
    undo = arm(point, crash, monkeypatch.setattr)
    try:
        with pytest.raises(Crash):
            run(_cfg(uri, ckpt))
    finally:
        undo()
        monkeypatch.undo()
    run(_cfg(uri, ckpt))
    _assert_same(_result(uri), reference)
    assert not list(ckpt.glob("*.lock")), "the run's lock outlived it"


@pytest.mark.parametrize("statement", [n if n == 800 else pytest.param(n, marks=pytest.mark.slow)
                                       for n in SCHEMA_STATEMENTS])
def test_a_crash_during_the_first_schema_creation_leaves_a_store_the_next_tracker_opens(statement, tmp_path):
    from repro.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    undo = arm(f"schema:{statement}", crash)
    try:
        with pytest.raises(Crash):
            Tracker(uri, "repro")
    finally:
        undo()
    tracker = Tracker(uri, "repro")
    tracker.start("abc", "r", {})
    tracker.end("FINISHED")
    assert [r.info.status for r in runs_of(uri)] == ["FINISHED"]
    assert [p.name for p in tmp_path.iterdir() if "migrating" in p.name] == []


# ----------------------------------------------------------------------------- SIGKILL
@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("point", list(POINTS))
def test_a_sigkill_at_each_point_then_the_same_command_ends_as_an_uninterrupted_run(point, tmp_path, mlflow_template,
                                                                                    reference):
    db = tmp_path / "m.db"
    if point != "schema":
        shutil.copy(mlflow_template, db)
    uri = f"sqlite:///{db}"
    killed = _child(point, uri, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    again = _child(None, uri, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same(_result(uri), reference)


@pytest.mark.slow
@pytest.mark.parametrize("statement", SCHEMA_STATEMENTS)
def test_a_sigkill_during_the_first_schema_creation_leaves_a_store_the_next_tracker_opens(statement, tmp_path):
    code = ("import sys\nfrom tests.test_faults import arm, sigkill\narm(sys.argv[2], sigkill)\n"
            "from repro.tracking import Tracker\nTracker(sys.argv[1], 'repro')\n")
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", code, uri, f"schema:{statement}"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, (time.time() - started, proc.stderr[-2000:])
    from repro.tracking import Tracker

    tracker = Tracker(uri, "repro")
    tracker.start("abc", "r", {})
    tracker.end("FINISHED")
    assert [r.info.status for r in runs_of(uri)] == ["FINISHED"]


@needs_mnist
def test_an_adam_run_crashed_mid_epoch_resumes_to_the_uninterrupted_numbers(tmp_path, monkeypatch, mlflow_template):
    """Under Adam (fused on CPU), a crashed run resumes to the uninterrupted numbers and keeps its
    kernel: torch's load_state_dict takes the checkpoint's param-group flags, and the crashed run's
    checkpoint is made to say ``fused=None``, as one written before the fused kernel does (the two
    kernels can agree to the bit on a run this small, so the kernel of every step is recorded)."""
    import torch

    from repro.train import run

    adam = ("optim=adam", "optim.lr=1.2e-3")
    kernels: list[bool | None] = []
    real_step = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        kernels.append(self.param_groups[0]["fused"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    results = []
    for crashed in (False, True):
        db = tmp_path / f"m{int(crashed)}.db"
        shutil.copy(mlflow_template, db)
        uri, ckpt = f"sqlite:///{db}", tmp_path / f"ck{int(crashed)}"
        if crashed:
            with pytest.MonkeyPatch.context() as fault:  # disarmed on leaving; the Adam recorder stays
                arm("mid_epoch:2", crash, fault.setattr)
                with pytest.raises(Crash):
                    run(_cfg(uri, ckpt, *adam))
            (path,) = ckpt.glob("*.pt")
            state = torch.load(path, weights_only=False)
            assert all(g["fused"] is True for g in state["optimizer"]["param_groups"])
            for group in state["optimizer"]["param_groups"]:
                group["fused"] = None
            torch.save(state, path)
        run(_cfg(uri, ckpt, *adam))
        results.append(_result(uri))
    _assert_same(results[1], results[0])
    assert len(kernels) > 18 and set(kernels) == {True}  # 18 steps uninterrupted, more with the crash
