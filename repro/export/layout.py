"""The CSR layout of :mod:`repro.export` (the convention is in the package docstring): masked
state dict -> flat dict of plain tensors + metadata, the container file, and back to a model.

Reading checks every CSR triple before use (lengths, bounds, order): a truncated or edited
file fails with one line naming the tensor, never with an index error deep in torch or, with
``torch.sparse`` invariant checks off, a crash.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from repro.export.spec import MASK_SUFFIX, ModelSpec, without_masks

LAYOUT = "csr"
VERSION = 1
META_FILE = "model.json"
CSR_PARTS = ("crow_indices", "col_indices", "values")


class ExportError(ValueError):
    """A user-fixable problem with what is exported or loaded (one line, with the fix)."""


# ----------------------------------------------------------------------------- CSR
def _index_dtype(n: int) -> torch.dtype:
    return torch.int32 if n < 2**31 else torch.int64


def to_csr(weight: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The kept entries (mask != 0) of ``weight``'s 2-D view ``(out, -1)`` as a CSR triple."""
    w2, keep = weight.detach().reshape(weight.shape[0], -1), mask.reshape(weight.shape[0], -1) != 0
    dtype = _index_dtype(max(w2.numel(), w2.shape[1]) + 1)
    crow = torch.zeros(w2.shape[0] + 1, dtype=torch.int64)
    crow[1:] = keep.sum(dim=1).cumsum(0)
    # nonzero() is row-major, as is boolean indexing: columns and values come out in the same order
    cols = keep.nonzero()[:, 1]
    return {"crow_indices": crow.to(dtype), "col_indices": cols.to(dtype), "values": w2[keep].clone()}


def check_csr(name: str, parts: Mapping[str, torch.Tensor], shape: tuple[int, ...]) -> None:
    """Refuse a CSR triple that does not describe a ``shape``-sized weight (ExportError)."""
    rows, cols = shape[0], int(torch.Size(shape[1:]).numel())
    crow, col, values = (parts[p] for p in CSR_PARTS)
    bad = (crow.dim() != 1 or crow.numel() != rows + 1 or col.dim() != 1 or values.dim() != 1
           or col.numel() != values.numel() or int(crow[0]) != 0 or int(crow[-1]) != col.numel()
           or bool((crow.diff() < 0).any()) or (col.numel() and (int(col.min()) < 0 or int(col.max()) >= cols)))
    if not bad and col.numel() > 1:
        # within a row columns increase; across a row boundary they may fall
        rises = col.diff() > 0
        starts = torch.zeros(col.numel(), dtype=torch.bool)
        starts[crow[1:-1][crow[1:-1] < col.numel()].long()] = True
        bad = not bool((rises | starts[1:]).all())
    if bad:
        raise ExportError(f"{name}: its CSR tensors do not describe a {'x'.join(map(str, shape))} weight "
                          "(file damaged or edited): export the run again")


def from_csr(parts: Mapping[str, torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """The dense weight of ``shape`` that a (checked) CSR triple describes; values are copied as they are."""
    crow, col, values = (parts[p].long() if p != "values" else parts[p] for p in CSR_PARTS)
    dense = torch.zeros(shape[0], int(torch.Size(shape[1:]).numel()), dtype=values.dtype)
    rows = torch.repeat_interleave(torch.arange(shape[0]), crow.diff())
    dense[rows, col] = values
    return dense.reshape(shape)


def compress(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict], list[str]]:
    """A masked state dict -> (flat tensors, per-CSR-weight metadata, names kept dense)."""
    masked = {k[: -len(MASK_SUFFIX)] for k in state if k.endswith(MASK_SUFFIX)}
    tensors: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    dense: list[str] = []
    for name, value in without_masks(state).items():
        value = value.detach().cpu()
        if name in masked:
            parts = to_csr(value, state[name + MASK_SUFFIX].cpu())
            tensors.update({f"{name}.{p}": t for p, t in parts.items()})
            layers[name] = {"shape": list(value.shape), "nnz": parts["values"].numel(), "numel": value.numel(),
                            "index_dtype": str(parts["col_indices"].dtype).removeprefix("torch.")}
        else:
            tensors[name] = value.contiguous().clone()
            dense.append(name)
    return tensors, layers, dense


def decompress(tensors: Mapping[str, torch.Tensor], layers: Mapping[str, dict]) -> dict[str, torch.Tensor]:
    """Flat tensors -> a dense state dict (no masks), every CSR triple checked first."""
    state: dict[str, torch.Tensor] = {}
    csr_keys = {f"{name}.{p}" for name in layers for p in CSR_PARTS}
    for name, info in layers.items():
        missing = [p for p in CSR_PARTS if f"{name}.{p}" not in tensors]
        if missing:
            raise ExportError(f"{name}: {', '.join(missing)} missing from the export: export the run again")
        parts = {p: tensors[f"{name}.{p}"] for p in CSR_PARTS}
        check_csr(name, parts, tuple(info["shape"]))
        state[name] = from_csr(parts, tuple(info["shape"]))
    state.update({k: v for k, v in tensors.items() if k not in csr_keys})
    return state


# ----------------------------------------------------------------------------- container
def container() -> tuple[str, str]:
    """(container, file name): safetensors when the package is installed, else torch.save."""
    if importlib.util.find_spec("safetensors") is not None:
        return "safetensors", "model.safetensors"
    return "torch.save", "model.pt"


def save_tensors(tensors: Mapping[str, torch.Tensor], path: Path, kind: str) -> None:
    if kind == "safetensors":
        from safetensors.torch import save_file

        # one metadata entry: safetensors writes a map's entries in a per-process random order,
        # which would make the same tensors give different bytes (and compressed sizes)
        save_file(dict(tensors), str(path), metadata={"repro-export": LAYOUT})
    else:
        torch.save(dict(tensors), path)


def load_tensors(path: Path, kind: str) -> dict[str, torch.Tensor]:
    if kind == "safetensors":
        from safetensors.torch import load

        # from bytes, not safetensors' mmap: tensors backed by a mapped file fault (SIGBUS) once
        # the file is rewritten or truncated, and an export directory is a user's to overwrite
        return load(path.read_bytes())
    return torch.load(path, map_location="cpu", weights_only=True)


def tensor_bytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """The payload: bytes of the tensors themselves, whatever the container adds around them."""
    return sum(t.numel() * t.element_size() for t in tensors.values())


# ----------------------------------------------------------------------------- export / load
def export_state(state: Mapping[str, torch.Tensor], spec: ModelSpec, out: Path, source: str = "") -> dict[str, Any]:
    """Write ``out/model.{safetensors,pt}`` and ``out/model.json`` for a masked state dict; returns the metadata."""
    if not any(k.endswith(MASK_SUFFIX) for k in state):
        raise ExportError("the state dict holds no *.weight_mask buffers: nothing says which weights were pruned "
                          "(export a run's final_state_dict.pt or a training checkpoint)")
    tensors, layers, dense = compress(state)
    kind, filename = container()
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(tensors, out / filename, kind)
    meta = {"format": "repro-export", "version": VERSION, "layout": LAYOUT, "container": kind, "file": filename,
            "source": source, "model": spec.as_dict(), "layers": layers, "dense": dense}
    write_meta(out, meta)
    return meta


def write_meta(out: Path, meta: Mapping[str, Any]) -> None:
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_export(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, flat tensors) of an export folder; ExportError when it is not one."""
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise ExportError(f"{path}: no {META_FILE} there: point at a folder written by repro-export")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "repro-export" or meta.get("layout") != LAYOUT or meta.get("version") != VERSION:
        raise ExportError(f"{meta_path}: not a repro-export {LAYOUT} v{VERSION} folder: export the run again")
    return meta, load_tensors(Path(path) / meta["file"], meta["container"])


def load_exported(path: Path | str) -> nn.Module:
    """The exported subnetwork as a plain model (no masks) in eval mode, built by repro.models.build."""
    meta, tensors = read_export(Path(path))
    model = ModelSpec(**meta["model"]).build()
    missing, unexpected = model.load_state_dict(decompress(tensors, meta["layers"]), strict=False)
    if missing or unexpected:
        raise ExportError(f"{path}: the export does not fit {meta['model']['name']} "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]}): export the run again")
    return model.eval()
