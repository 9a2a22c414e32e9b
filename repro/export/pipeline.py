"""Export end to end: write the folder atomically with its sizes, and the hook that does it at
the end of a training run (``trainer.export=true``).

The folder is written beside its destination under a temporary name and renamed into place,
so a failure half way leaves nothing at ``--out``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from repro import records as rec
from repro.export.kernels import sparse_model
from repro.export.latency import measure_latency
from repro.export.layout import ExportError, export_state, load_exported, write_meta
from repro.export.sizes import ZSTD_MISSING, measure_sizes, zstd_available
from repro.export.spec import ModelSpec, infer_spec

log = logging.getLogger("repro.export")


def check_out(out: Path) -> None:
    """Refuse a destination that exists and is not an empty folder (an export never mixes with other files)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out} exists and is not an empty folder: choose a new folder or remove it")


def export(state: Mapping[str, torch.Tensor], spec: Any, out: Path, source: str = "") -> dict[str, Any]:
    """Write the export folder ``out`` (model file + model.json with sizes); returns its metadata."""
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        meta = export_state(state, spec, tmp, source)
        meta["sizes"] = measure_sizes(tmp)
        meta["zstd"] = "level 3" if zstd_available() else ZSTD_MISSING
        write_meta(tmp, meta)
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def time_export(out: Path, meta: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Dense vs sparse-kernel CPU time of an export folder at the current torch thread count
    (:func:`repro.export.latency.measure_latency`), with each CSR layer's kernel ("csr" or why none)."""
    dense = load_exported(out)
    sparse, kinds = sparse_model(dense, meta["layers"])
    result = measure_latency(dense, sparse, ModelSpec(**meta["model"]).input_shape(1), repeats=repeats)
    result["layers"] = kinds
    return result


def after_training(cfg: Any, model: torch.nn.Module, tracker: Any) -> dict[str, float] | None:
    """``trainer.export=true``: export the trained subnetwork, log its sizes as metrics and the
    folder as the artifact ``export/``. Does nothing otherwise."""
    if not cfg.trainer.export:
        return None
    state = {k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    spec = infer_spec(state, cfg.model.name, float(cfg.model.width))
    with tempfile.TemporaryDirectory(prefix="repro-export-") as tmp:
        out = Path(tmp) / rec.EXPORT_ARTIFACT_DIR
        meta = export(state, spec, out, source=str(getattr(tracker, "run_id", "") or ""))
        tracker.log_metrics(meta["sizes"])
        for path in sorted(out.iterdir()):
            tracker.log_file(path, rec.EXPORT_ARTIFACT_DIR)
    log.info("export: %s", ", ".join(f"{k}={v:.0f}" for k, v in meta["sizes"].items()))
    return meta["sizes"]
