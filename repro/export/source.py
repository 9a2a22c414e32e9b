"""Where the weights to export come from: a file (a training checkpoint or a run's
``final_state_dict.pt``) or an MLflow run id (its ``final_state_dict.pt`` and ``config.yaml``).

Every problem is an :class:`ExportError` with one line naming the fix, raised before anything
is written: a missing path, an unknown run id, a store that is not there (opening a SQLite URI
that names no file would create an empty store), a file that holds no masks.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from repro import records as rec
from repro.export.layout import ExportError
from repro.export.spec import MASK_SUFFIX
from repro.tracking import _sqlite_path, check_store, resolve_uri

RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class Source:
    """A masked state dict and what its origin says about the model (None: read it off the shapes)."""

    state: dict[str, torch.Tensor]
    origin: str
    model: str | None = None
    width: float | None = None


def read_source(source: str, tracking_uri: str | None = None) -> Source:
    """The state dict named by ``source`` (a path, else a run id), refused unless it carries masks."""
    path = Path(source)
    if path.exists():
        found = Source(_state_of(_load(path), str(path)), str(path.resolve()))
    elif RUN_ID.fullmatch(source):
        found = _from_run(source, tracking_uri)
    else:
        raise ExportError(f"{source}: no such file, and not an MLflow run id (32 hex digits): "
                          "pass a checkpoint, a final_state_dict.pt or a run id")
    if not any(k.endswith(MASK_SUFFIX) for k in found.state):
        raise ExportError(f"{source}: holds no *.weight_mask buffers, so nothing says which weights were pruned: "
                          "export a checkpoint or final_state_dict.pt of a repro-train run")
    return found


def _load(path: Path) -> Any:
    if not path.is_file():
        raise ExportError(f"{path} is a folder: pass a checkpoint file (checkpoints/<identity>.pt) or a run id")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch or pickle say, the file is unusable
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(f"{path}: not a readable torch file ({reason}): pass a checkpoint or final_state_dict.pt") from None


def _state_of(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """The model's state dict in a training checkpoint (key ``model``) or a bare state dict."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ExportError(f"{where}: neither a training checkpoint nor a state dict: "
                          "pass checkpoints/<identity>.pt or a run's final_state_dict.pt")
    return dict(obj)


def open_store(tracking_uri: str | None) -> str:
    """The resolved URI of a store that exists and can be read; refused (ExportError) before
    anything would create or touch it (MLflow creates a SQLite file it is pointed at)."""
    from mlflow.exceptions import MlflowException

    uri = resolve_uri(tracking_uri)
    db = _sqlite_path(uri)
    if db is not None and not db.is_file():
        raise ExportError(f"no tracking store at {db}: pass --tracking-uri (or set MLFLOW_TRACKING_URI) to the runs' store")
    try:
        check_store(uri)
    except (MlflowException, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(f"tracking store {uri} cannot be used ({first}): check --tracking-uri") from None
    return uri


def _from_run(run_id: str, tracking_uri: str | None) -> Source:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = open_store(tracking_uri)
    try:
        client = MlflowClient(tracking_uri=uri)
        client.get_run(run_id)
    except (MlflowException, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(f"run {run_id} not found in {uri} ({first}): check the id or pass --tracking-uri") from None
    with tempfile.TemporaryDirectory(prefix="repro-export-") as tmp:
        try:
            path = Path(client.download_artifacts(run_id, rec.FINAL_STATE_ARTIFACT, tmp))
        except (MlflowException, OSError):
            raise ExportError(f"run {run_id} has no {rec.FINAL_STATE_ARTIFACT} (trainer.save_model=false?): "
                              "export its checkpoint file instead") from None
        state = _state_of(_load(path), f"run {run_id}")
        name, width = _model_hint(client, run_id)
    return Source(state, run_id, name, width)


def _model_hint(client: Any, run_id: str) -> tuple[str | None, float | None]:
    """model.name and model.width from the run's params (or nothing: the shapes decide)."""
    params = client.get_run(run_id).data.params
    name = params.get(rec.MODEL_PARAM)
    try:
        width = float(params[rec.WIDTH_PARAM])
    except (KeyError, ValueError):
        width = None
    return name, width
