"""MLflow bookkeeping: find a run by identity (new / resume / skip), log, and always finish it.

Everything goes through ``MlflowClient`` with explicit run ids: no fluent "active run"
state that a reused worker process could leak into the next job. A fresh SQLite store
is migrated and the experiment created once, under a file lock, before parallel jobs
race (MLflow fails on concurrent first-time schema creation).

A store is checked before anything is written to it: a tracking server must answer
within seconds, a SQLite file and its folder must be writable. A SQLite schema is
created or migrated in a temporary copy that replaces the store in one rename, so a
``kill -9`` half way leaves the store as it was (MLflow's migrations are not
transactional on SQLite: killed in place, they leave a file every later client refuses).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import sqlite3
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
    TRAIN_LOSS,  # noqa: F401
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
    """The file of a ``sqlite:///`` URI (None for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///") or uri in ("sqlite:///", "sqlite:///:memory:"):
        return None
    return Path(uri[len("sqlite:///"):])


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


class StoreError(RuntimeError):
    """The tracking store cannot be used as configured; the message names it and the fix."""


#: seconds a tracking server gets to answer the first request (MLflow's client would retry a
#: refused connection with backoff for minutes, MLFLOW_HTTP_REQUEST_MAX_RETRIES, then print a traceback)
PROBE_TIMEOUT_S = 5
SQLITE_MAGIC = b"SQLite format 3\x00"
#: tables that a fresh schema or its migrations fill by themselves: rows anywhere else are records
BOOKKEEPING_TABLES = frozenset({"alembic_version", "workspaces", "experiments", "experiment_tags"})


def check_store(uri: str) -> None:
    """Refuse a store that cannot be used (:class:`StoreError`) before anything is written to it."""
    if uri.startswith(("http://", "https://")):
        _probe_server(uri)
        return
    path = _sqlite_path(uri)
    if path is not None:
        _check_sqlite_file(path)


def _probe_server(uri: str) -> None:
    """One request, no retries, seconds long. Any HTTP answer counts as reachable: the client's own
    calls, with MLflow's retries for a server that is busy, come after."""
    from urllib.parse import urlsplit

    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        http_request(get_default_host_creds(uri), "/health", "GET", max_retries=0, timeout=PROBE_TIMEOUT_S,
                     raise_on_status=False)
    except Exception as exc:  # noqa: BLE001 - refused, unknown host, TLS, time-out: all mean "not there"
        where = urlsplit(uri)
        raise StoreError(
            f"no MLflow tracking server answers at {uri} ({_network_reason(exc)}): start one there "
            f"(mlflow server --host {where.hostname} --port {where.port or 5000} --backend-store-uri sqlite:///mlflow.db) "
            "or record to a local file with tracking=sqlite") from None


def _network_reason(exc: Exception) -> str:
    """The useful words of a requests/urllib3 error chain ("Connection refused", "timed out")."""
    import re

    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if found:
        return found.group(1).strip()
    return "timed out" if "timed out" in text.lower() else text.splitlines()[0][:200]


def _check_sqlite_file(path: Path) -> None:
    """A SQLite store needs a writable file (or none yet) in a writable folder: SQLite writes its
    journal beside the file, and this module its lock file. (As root, permissions never refuse.)"""
    if path.is_dir():
        raise StoreError(f"the MLflow store {path} is a directory: name a file in it, "
                         f"e.g. tracking.uri=sqlite:///{path / 'mlflow.db'}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise StoreError(f"the MLflow store {path} cannot be created: {folder} is a file, not a folder; "
                         "choose another tracking.uri")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"cannot write the folder {folder} of the MLflow store {path} (SQLite writes its journal "
                         "there): make it writable or choose another tracking.uri")
    if not path.exists():
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"the MLflow store {path} is read-only: make it writable (chmod u+w) or choose another "
                         "tracking.uri")
    with open(path, "rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise StoreError(f"{path} is not an SQLite file, so not an MLflow store: move it away or choose another "
                         "tracking.uri")


# ----------------------------------------------------------------------------- SQLite schema


@dataclasses.dataclass(frozen=True)
class _Schema:
    """What a SQLite file holds, read without writing: its tables and alembic revision."""

    tables: frozenset[str]
    revision: str | None


def _expected_schema() -> tuple[str, frozenset[str]]:
    """The revision and tables this MLflow's SqlAlchemyStore checks for when it opens a store."""
    from mlflow.store.db import utils as db_utils  # imports every table model into Base
    from mlflow.store.db.base_sql_model import Base

    return db_utils._get_latest_schema_revision(), frozenset(Base.metadata.tables)


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)


def _read_schema(path: Path) -> _Schema:
    con = _read_only(path)
    try:
        tables = frozenset(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        row = con.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in tables else None
    finally:
        con.close()
    return _Schema(tables, row[0] if row else None)


def _records(path: Path, tables: frozenset[str]) -> int:
    """Rows outside the bookkeeping tables (an alembic scratch copy counts as its table)."""
    con = _read_only(path)
    try:
        return sum(con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables
                   if t.removeprefix("_alembic_tmp_") not in BOOKKEEPING_TABLES and not t.startswith("sqlite_"))
    finally:
        con.close()


def _scratch(path: Path) -> Path:
    """Where this process builds a schema before it replaces ``path``."""
    return path.with_name(f".{path.name}.migrating-{os.getpid()}")


def _remove_scratch(path: Path) -> None:
    """Scratch files of migrations that died (SIGKILL): the store lock says none is running."""
    for leftover in path.parent.glob(f".{path.name}.migrating-*"):
        leftover.unlink(missing_ok=True)


def _migrated(path: Path, source: Path | None) -> Path:
    """A scratch file with the full schema: new (``source`` None) or a migrated copy of ``source``."""
    from mlflow.store.db import utils as db_utils

    scratch = _scratch(path)
    scratch.unlink(missing_ok=True)
    if source is not None:
        with contextlib.closing(_read_only(source)) as src, contextlib.closing(sqlite3.connect(scratch)) as dst:
            src.backup(dst)
    engine = db_utils.create_sqlalchemy_engine(f"sqlite:///{scratch}")
    try:
        db_utils._initialize_tables(engine)  # what SqlAlchemyStore runs on a store with tables missing
    finally:
        engine.dispose()
    head, expected = _expected_schema()
    built = _read_schema(scratch)
    if built.revision != head or not expected <= built.tables:
        missing = ", ".join(sorted(expected - built.tables)[:5]) or "none"
        raise StoreError(f"the migration ended at revision {built.revision}, not {head} (tables missing: {missing})")
    with open(scratch, "rb") as handle:
        os.fsync(handle.fileno())
    return scratch


def _install(scratch: Path, path: Path) -> None:
    """Put the finished scratch file in place: one rename, so a reader sees the old file or the new."""
    os.replace(scratch, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_schema(path: Path) -> None:
    """Give the SQLite store at ``path`` MLflow's full schema without ever migrating it in place.

    Call under the store lock. A new store is built aside and renamed into place; a store with
    tables missing (an MLflow upgrade) is migrated in a copy. A store an interrupted migration
    left half built (by an older version of this module) is set aside and rebuilt if it holds no
    records; with records it is refused with what to do.
    """
    _remove_scratch(path)
    if not path.exists() or path.stat().st_size == 0:
        _install(_migrated(path, None), path)
        return
    schema = _read_schema(path)
    head, expected = _expected_schema()
    if schema.revision == head and expected <= schema.tables:
        return
    if schema.tables and not schema.tables & (expected | {"alembic_version"}):
        raise StoreError(f"{path} is an SQLite file of another program, not an MLflow store: move it away or "
                         "choose another tracking.uri")
    records = _records(path, schema.tables)
    if records == 0:
        scratch = _migrated(path, None)
        aside = path.with_name(f"{path.name}.half-migrated-{time.strftime('%Y%m%d-%H%M%S')}")
        if schema.tables:
            os.replace(path, aside)
            log.warning("the MLflow store %s was left half-migrated (schema revision %s) and holds no runs: moved "
                        "it to %s and created the store anew", path, schema.revision, aside)
        _install(scratch, path)
        return
    if expected <= schema.tables:
        raise StoreError(f"the MLflow store {path} has schema revision {schema.revision}, this MLflow needs {head}: "
                         f"back the file up, then run: mlflow db upgrade sqlite:///{path}")
    try:
        _install(_migrated(path, path), path)
    except Exception as exc:  # noqa: BLE001 - the store stays as it was; say what to do
        _remove_scratch(path)
        reason = str(exc).splitlines()[0][:200]
        raise StoreError(f"the MLflow store {path} ({records} records) has a half-migrated schema (revision "
                         f"{schema.revision}) that MLflow cannot finish ({reason}): restore it from a backup, or "
                         "move it away to start a new store") from None


#: tracked paths the dirty check leaves out: the report's outputs, which the report itself rewrites
#: (a report run before training must not mark every later run "uncommitted changes")
NOT_CODE = ("results",)


def git_info(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """Commit and dirty flag of the checkout the code runs from ("unknown" outside git).

    Dirty means a tracked file differs from the commit, outside :data:`NOT_CODE`: what could change
    a result (code, configs, references), not the outputs the suite writes into the checkout."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".",
                         *(f":(exclude){p}" for p in NOT_CODE)))
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
        check_store(self.uri)
        with _store_lock(self.uri):
            # the schema is built once, under the lock, aside and renamed into place
            path = _sqlite_path(self.uri)
            if path is not None:
                ensure_schema(path)
            self.client = MlflowClient(tracking_uri=self.uri)
            self.experiment_id = self._prepare(experiment)
        self.run_id: str | None = None
        self.resumed = False
        self._system: Any = None
        #: metric name -> steps already in the run (read from the store on first use after a resume)
        self._logged_steps: dict[str, set[int]] = {}

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
            self._logged_steps = {}
            log.info("resuming MLflow run %s", resume_run_id)
        else:
            run = self.client.create_run(self.experiment_id, run_name=name, tags={IDENTITY_TAG: identity, **tags})
            self.run_id = run.info.run_id
            self._logged_steps = {}
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)
        from repro import dashboard, run_context

        dashboard.prepare_experiment(self.client, self.experiment_id)  # make ui's saved view of the runs table
        log.info("%s", run_context.start_message(self.uri, self.experiment_id, self.run_id, self.resumed))
        return self.run_id

    def describe(self, text: str) -> None:
        """The run's description (markdown on its page in the UI)."""
        from repro.run_context import DESCRIPTION_TAG

        self.client.set_tag(self.run_id, DESCRIPTION_TAG, text)

    def start_system_metrics(self, interval_s: float) -> None:
        """MLflow's system metrics for this run until :meth:`end`."""
        from repro.run_context import SystemMetrics

        self._system = SystemMetrics(self.uri, self.run_id, interval_s, self.resumed)

    def log_dataset(self, dataset: Any, cfg: Any) -> None:
        """The data the run trains on as an MLflow dataset input (name, source, digest, subset)."""
        from repro.run_context import log_dataset

        log_dataset(self.client, self.run_id, dataset, cfg)

    def log_model(self, model: Any, cfg: Any, dataset: Any) -> None:
        """The final network as an MLflow model (repro.model_log)."""
        from repro.model_log import log_model

        log_model(self.uri, self.run_id, model, cfg, dataset)

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
        """Log a step's metrics once per name: a (metric, step) already in the run (logged before a
        resume, or by another series at the same step: an epoch's end and a mask update) is skipped."""
        from mlflow.entities import Metric

        if step is not None:
            metrics = {k: v for k, v in metrics.items() if step not in self._steps_of(k)}
            for k in metrics:
                self._logged_steps[k].add(step)
        if not metrics:
            return
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def _steps_of(self, name: str) -> set[int]:
        if name not in self._logged_steps:
            history = self.client.get_metric_history(self.run_id, name) if self.resumed else []
            self._logged_steps[name] = {m.step for m in history}
        return self._logged_steps[name]

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
                                     # the chain run is the parent, whatever tags the caller copied
                                     tags={**tags, IDENTITY_TAG: identity, PARENT_RUN_TAG: self.run_id})
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
        if self._system is not None:
            self._system.stop()
            self._system = None
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

    def describe(self, text: str) -> None: ...

    def start_system_metrics(self, interval_s: float) -> None: ...

    def log_dataset(self, dataset: Any, cfg: Any) -> None: ...

    def log_model(self, model: Any, cfg: Any, dataset: Any) -> None: ...

    def download(self, run_id: str, artifact: str, dst: Path) -> Path:
        raise RuntimeError("tracking is off (tracking=none): there are no runs to download from")

    def end(self, status: str, reason: str | None = None) -> None: ...
