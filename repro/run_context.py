"""What a run records about where and how it ran, beside its results: the command as the run's
description, the dataset as an MLflow input, system metrics, and the run's link printed at start.

MLflow shows each of these in its own place (the description on the run page, the dataset in the
runs table's "Dataset" column and the run's inputs, ``system/*`` charts), so a reader of the UI
sees what was trained on what without opening config.yaml. Nothing here changes a result: the
dataset input names the copy the run trained on (its source and a digest of its tensors), it does
not choose it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import sys
from typing import Any

from repro.data import Dataset

log = logging.getLogger(__name__)

#: MLflow's tag for the run's description (markdown, shown on the run page)
DESCRIPTION_TAG = "mlflow.note.content"


def command_line() -> str:
    """The command that started this process, as a user would type it again."""
    prog = sys.argv[0].rsplit("/", 1)[-1]
    if prog in ("__main__.py", "train.py"):
        prog = "python -m repro.train"
    return shlex.join([prog, *sys.argv[1:]])


def description(command: str, overrides: str) -> str:
    """The run description: the command and the Hydra overrides of this job (a sweep's job runs
    with one value of each swept key, which the command line alone does not say)."""
    text = f"```\n{command}\n```\n"
    if overrides:
        text += f"\nthis job's overrides: `{overrides}`\n"
    return text


def digest(dataset: Dataset) -> str:
    """A short digest of the tensors a run trains and tests on (train and test labels and images):
    two runs with the same digest saw the same data, whatever the path they read it from."""
    h = hashlib.sha256()
    for split in (dataset.train, dataset.test):
        h.update(split.images.cpu().numpy().tobytes())
        h.update(split.labels.cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def log_dataset(client: Any, run_id: str, dataset: Dataset, cfg: Any) -> None:
    """The dataset as an input of the run (name, source, digest; the subset as its context)."""
    from mlflow.entities import Dataset as MlflowDataset
    from mlflow.entities import DatasetInput, InputTag

    subset = []
    if cfg.data.train_subset:
        subset.append(f"train_subset={cfg.data.train_subset}")
    if cfg.data.test_subset:
        subset.append(f"test_subset={cfg.data.test_subset}")
    if cfg.data.val_size:
        subset.append(f"val_size={cfg.data.val_size}")
    profile = {"train": len(dataset.train), "test": len(dataset.test), "classes": dataset.num_classes}
    entity = MlflowDataset(name=f"{dataset.name}", digest=digest(dataset), source_type="local",
                           source=json.dumps({"source": str(dataset.source), "root": str(cfg.data.root)}),
                           profile=json.dumps(profile))
    context = ",".join(subset) or "full"
    client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])])


def ui_link(uri: str, experiment_id: str, run_id: str, base: str | None = None) -> str:
    """The run's page in the MLflow UI (``make ui`` serves it on http://127.0.0.1:5000 by default)."""
    root = base or (uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000")
    return f"{root}/#/experiments/{experiment_id}/runs/{run_id}"


class SystemMetrics:
    """MLflow's system metrics (CPU, memory, disk, network; GPU with nvidia-ml-py) for one run, in a
    thread that samples every ``interval_s`` seconds; :meth:`stop` ends it (every run ends it)."""

    def __init__(self, uri: str, run_id: str, interval_s: float, resumed: bool) -> None:
        self.monitor = None
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self.monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=resumed,
                                                tracking_uri=uri)
            self.monitor.start()
        except Exception as exc:  # noqa: BLE001 - psutil missing, no /proc: the run goes on without them
            log.warning("no system metrics for this run: %s", exc)
            self.monitor = None

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.finish()
            self.monitor = None


def start_message(uri: str, experiment_id: str, run_id: str, resumed: bool) -> str:
    return (f"MLflow run {run_id} ({'resumed' if resumed else 'new'}) in {uri}: "
            f"{ui_link(uri, experiment_id, run_id)} (make ui)")

