"""Shared fixtures: offline data, a pre-migrated MLflow store per test, an in-process runner
(`train_run`) and a subprocess runner (`train_cli`, for tests where a real process is the point)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("REPRO_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
os.environ["REPRO_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

needs_mnist = pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="offline MNIST mirror missing")
needs_cifar = pytest.mark.skipif(not (SHARED_DATA / "cifar10-jpeg").is_dir(), reason="offline CIFAR-10 JPEG copy missing")


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An MLflow SQLite store migrated once per session (migration takes seconds)."""
    from repro.tracking import Tracker

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    Tracker(f"sqlite:///{path}", "repro")
    return path


@pytest.fixture
def mlflow_uri(tmp_path, mlflow_template) -> str:
    """A private copy of the migrated store for one test."""
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    return f"sqlite:///{db}"


def repro_train(*args: str, cwd: Path, uri: str | None, timeout: float = 300, env: dict | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m repro.train ARGS` in ``cwd``; tracking goes to ``uri`` (None: tracking=none)."""
    environ = {**os.environ, **(env or {})}
    environ["REPRO_CACHE_DIR"] = str(ROOT / ".cache" / "repro")
    environ["REPRO_CKPT_DIR"] = str(cwd / "checkpoints")
    if uri is None:
        args = ("tracking=none", *args)
    else:
        environ["MLFLOW_TRACKING_URI"] = uri
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    proc = subprocess.run([sys.executable, "-m", "repro.train", *flags, "trainer.progress=log", *overrides], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"repro-train {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture
def train_cli(tmp_path, mlflow_uri):
    """Call repro-train in a temp dir against a private MLflow store."""

    def call(*args: str, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("uri", mlflow_uri)
        return repro_train(*args, cwd=tmp_path, **kw)

    call.uri = mlflow_uri
    call.cwd = tmp_path
    return call


def runs_of(uri: str, experiment: str = "repro", sweeps: bool = False):
    """The runs of an experiment as MLflow Run objects (newest first); a multirun's parent run
    (kind=sweep, repro.sweep_run) only with ``sweeps=True``."""
    from mlflow.tracking import MlflowClient

    from repro import records

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], run_view_type=3, max_results=1000)
    return [r for r in runs if sweeps or r.data.tags.get(records.KIND_TAG) != records.KIND_SWEEP]


@dataclass
class Outcome:
    """What an in-process run gave: its return value, the exit code (0 unless it exited) and stderr."""

    value: Any
    code: int
    stderr: str


def compose_job(*overrides: str) -> DictConfig:
    """A job's config as Hydra's run mode composes it, with HydraConfig set (so the run records its
    overrides) and the ``hydra`` node removed from the task config, as ``hydra.main`` does."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from repro.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_in_process(*overrides: str, cwd: Path, uri: str | None) -> Outcome:
    """`repro-train OVERRIDES` in this process: compose, then :func:`repro.train.run` (what
    ``hydra.main`` calls); tracking goes to ``uri`` (None: tracking=none), checkpoints to cwd."""
    from repro.train import run

    # the logged MLflow model and system metrics have their own tests; off here, they would only
    # slow every other in-process run down (a test that wants them passes tracking.log_model=true)
    extra = ["tracking=none"] if uri is None else [f"tracking.uri={uri}", "tracking.log_model=false",
                                                   "tracking.system_metrics=false"]
    cfg = compose_job("trainer.progress=log", f"trainer.checkpoint_dir={cwd / 'checkpoints'}", *extra, *overrides)
    err = io.StringIO()
    code, value = 0, None
    with contextlib.redirect_stderr(err):
        try:
            value = run(cfg)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Outcome(value, code, err.getvalue())


@pytest.fixture
def train_run(tmp_path, mlflow_uri, monkeypatch):
    """Call the run entry point in-process in a temp dir against a private MLflow store
    (``uri=None`` for tracking=none); ``check=False`` returns a failed Outcome instead of raising."""
    monkeypatch.setenv("REPRO_CACHE_DIR", str(ROOT / ".cache" / "repro"))
    monkeypatch.chdir(tmp_path)

    def call(*overrides: str, uri: str | None | object = mlflow_uri, check: bool = True) -> Outcome:
        outcome = run_in_process(*overrides, cwd=tmp_path, uri=uri)
        if check and outcome.code != 0:
            raise AssertionError(f"repro-train {' '.join(overrides)} exited {outcome.code}:\n{outcome.stderr[-4000:]}")
        return outcome

    call.uri = mlflow_uri
    call.cwd = tmp_path
    yield call
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None  # what the next test sees is its own
