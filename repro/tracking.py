"""MLflow bookkeeping: find a run by identity (new / resume / skip), log, and always finish it.

Everything goes through ``MlflowClient`` with explicit run ids: no fluent "active run"
state that a reused worker process could leak into the next job. A fresh SQLite store
is migrated and the experiment created once, under a file lock, before parallel jobs
race (MLflow fails on concurrent first-time schema creation).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from repro.records import (  # noqa: F401 - re-exported for callers of the old names
    FAILURE_TAG,
    GROUP_TAG,
    IDENTITY_TAG,
    LEGACY_IDENTITY_TAG,
    PARENT_RUN_TAG,
    PROFILE_TAG_PREFIX,
    RESUMED_WITH_PREFIX,
    TRAIN_LOSS,
    profile_tag,
)

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_uri(uri: str | None) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path('mlflow.db').resolve()}"


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    path = _sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def git_info() -> dict[str, str]:
    """Commit and dirty flag of the checkout the code runs from ("unknown" outside git)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts -> {"a.b.c": "value"} with lists as JSON."""
    out: dict[str, str] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = json.dumps(tree) if isinstance(tree, (list, tuple)) else str(tree)
    return out


class Tracker:
    """One MLflow run per job, found again by its identity tag."""

    enabled = True

    def __init__(self, uri: str | None, experiment: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = resolve_uri(uri)
        with _store_lock(self.uri):
            # Creating the client migrates a fresh SQLite schema: once, under the lock.
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._prepare(experiment)
        self.run_id: str | None = None
        self.resumed = False
        self._logged_steps: set[int] = set()

    def _prepare(self, name: str) -> str:
        """The experiment's id, creating it (artifacts beside a SQLite store) on first use."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        from mlflow.exceptions import MlflowException

        db = _sqlite_path(self.uri)
        location = (db.parent / "mlartifacts").resolve().as_uri() if db else None
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            # a parallel job created it first (a server store: the SQLite lock does not reach there)
            exp = self.client.get_experiment_by_name(name)
            if exc.error_code != "RESOURCE_ALREADY_EXISTS" or exp is None:
                raise
            return exp.experiment_id

    # ------------------------------------------------------------------ identity
    def find(self, identity: str):
        """The newest run with this identity, or None."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{IDENTITY_TAG}` = '{identity}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None

    def adopt(self, run_id: str, identity: str, legacy: str, group: str) -> None:
        """Re-tag a run found under its old identity (and its nested target runs, whose
        identities extend the parent's) with the new identity and its group (so the report
        averages it with runs made after the change); the old identity stays as a tag."""
        self.client.set_tag(run_id, IDENTITY_TAG, identity)
        self.client.set_tag(run_id, LEGACY_IDENTITY_TAG, legacy)
        self.client.set_tag(run_id, GROUP_TAG, group)
        children = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT_RUN_TAG}` = '{run_id}'")
        for child in children:
            old = child.data.tags.get(IDENTITY_TAG, "")
            if old.startswith(legacy + ":"):
                self.client.set_tag(child.info.run_id, IDENTITY_TAG, identity + old[len(legacy):])
                self.client.set_tag(child.info.run_id, LEGACY_IDENTITY_TAG, old)
                self.client.set_tag(child.info.run_id, GROUP_TAG, group)
        log.info("run %s carried the identity of an older version (%s); re-tagged as %s", run_id, legacy, identity)

    def start(self, identity: str, name: str, tags: dict[str, str], resume_run_id: str | None = None) -> str:
        self.resumed = bool(resume_run_id)
        if resume_run_id:
            self.run_id = resume_run_id
            self.client.update_run(resume_run_id, status="RUNNING")
            history = self.client.get_metric_history(resume_run_id, TRAIN_LOSS)
            self._logged_steps = {m.step for m in history}
            log.info("resuming MLflow run %s", resume_run_id)
        else:
            run = self.client.create_run(self.experiment_id, run_name=name, tags={IDENTITY_TAG: identity, **tags})
            self.run_id = run.info.run_id
            self._logged_steps = set()
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)
        return self.run_id

    # ------------------------------------------------------------------ logging
    def log_params(self, params: dict[str, str]) -> None:
        """Log the run's params. A resumed run keeps the values it was started with: MLflow
        refuses to change a param, and a resume may legitimately differ in keys outside the
        identity (threads, data root, progress): such a new value is kept as a tag
        ``repro.resumed_with.<key>`` instead."""
        from mlflow.entities import Param

        params = {k: v[:6000] for k, v in params.items()}
        if self.resumed:
            logged = self.client.get_run(self.run_id).data.params
            for k, v in params.items():
                if k in logged and logged[k] != v:
                    self.client.set_tag(self.run_id, f"{RESUMED_WITH_PREFIX}{k}", v[:5000])
            params = {k: v for k, v in params.items() if k not in logged}
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log a step's metrics once: steps already in the run (before a resume) are skipped."""
        from mlflow.entities import Metric

        if step is not None:
            if step in self._logged_steps:
                return
            self._logged_steps.add(step)
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def log_text(self, text: str, filename: str) -> None:
        self.client.log_text(self.run_id, text, filename)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_torch(self, obj: Any, filename: str) -> None:
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / filename
            torch.save(obj, path)
            self.log_file(path)

    def log_child(self, identity: str, name: str, tags: dict[str, str], params: dict[str, str],
                  metrics: dict[str, float], texts: dict[str, str] | None = None) -> str | None:
        """A finished nested run under the current one (one LTH target of a chain); idempotent:
        a FINISHED child with the same identity is kept as it is."""
        existing = self.find(identity)
        if existing is not None and existing.info.status == "FINISHED":
            return existing.info.run_id
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={IDENTITY_TAG: identity, PARENT_RUN_TAG: self.run_id, **tags})
        parent, self.run_id = self.run_id, run.info.run_id
        resumed, self.resumed = self.resumed, False
        try:
            self.log_params(params)
            self.log_metrics(metrics)
            for filename, text in (texts or {}).items():
                self.log_text(text, filename)
            self.client.set_terminated(run.info.run_id, status="FINISHED")
        except BaseException:
            # a kill or an error half way: never leave the child RUNNING (a rerun logs a new one)
            self.client.set_terminated(run.info.run_id, status="KILLED")
            raise
        finally:
            self.run_id, self.resumed = parent, resumed
        return run.info.run_id

    def join_profile(self, run_id: str, profile: str) -> None:
        """Mark a reused FINISHED run (and its nested target runs) as part of ``profile`` too.

        Run identity leaves the profile out, so a sweep skips a config that another profile
        already ran; without this tag that profile's report would miss the run.
        """
        key = profile_tag(profile)
        children = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT_RUN_TAG}` = '{run_id}'")
        for rid in [run_id, *(c.info.run_id for c in children)]:
            self.client.set_tag(rid, key, "1")

    def download(self, run_id: str, artifact: str, dst: Path) -> Path:
        return Path(self.client.download_artifacts(run_id, artifact, str(dst)))

    def end(self, status: str, reason: str | None = None) -> None:
        if self.run_id is None:
            return
        if reason:
            self.client.set_tag(self.run_id, FAILURE_TAG, reason[:5000])
        elif status == "FINISHED" and FAILURE_TAG in self.client.get_run(self.run_id).data.tags:
            self.client.delete_tag(self.run_id, FAILURE_TAG)  # the failure of an earlier attempt, now resumed
        self.client.set_terminated(self.run_id, status=status)


class NullTracker:
    """tracking=none: Tracker's interface, nothing recorded (a misspelt call still fails)."""

    enabled = False
    run_id = None

    def find(self, identity: str) -> None:
        return None

    def start(self, identity: str, name: str, tags: dict[str, str], resume_run_id: str | None = None) -> None:
        return None

    def join_profile(self, run_id: str, profile: str) -> None: ...

    def adopt(self, run_id: str, identity: str, legacy: str, group: str) -> None: ...

    def log_params(self, params: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_text(self, text: str, filename: str) -> None: ...

    def log_file(self, path: Path, artifact_path: str | None = None) -> None: ...

    def log_torch(self, obj: Any, filename: str) -> None: ...

    def log_child(self, identity: str, name: str, tags: dict[str, str], params: dict[str, str],
                  metrics: dict[str, float], texts: dict[str, str] | None = None) -> None: ...

    def download(self, run_id: str, artifact: str, dst: Path) -> Path:
        raise RuntimeError("tracking is off (tracking=none): there are no runs to download from")

    def end(self, status: str, reason: str | None = None) -> None: ...
