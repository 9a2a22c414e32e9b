"""What the sparsity buys on disk: the dense fp32 model against the exported CSR file, raw and
compressed, measured on the bytes themselves (not estimated from counts).

The dense figure is the same state dict, masks dropped, written by the same container as the
export (safetensors or torch.save), so the two differ only in layout. gzip runs at level 6 (the
gzip tool's default, mtime 0 so the figure is reproducible), zstd at level 3 (its default) and
only where the ``zstandard`` module is installed; without it the zstd metrics are absent and
:data:`ZSTD_MISSING` says why.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Mapping
from pathlib import Path

import torch

from repro import records as rec
from repro.export.layout import decompress, read_export, tensor_bytes
from repro.export.spec import ModelSpec

GZIP_LEVEL = 6
ZSTD_LEVEL = 3
ZSTD_MISSING = "zstd unavailable: the zstandard module is not installed (pip install zstandard)"


def _zstd():
    """The zstandard module, or None."""
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def zstd_available() -> bool:
    return _zstd() is not None


def serialize(tensors: Mapping[str, torch.Tensor], kind: str) -> bytes:
    """The bytes ``kind`` (safetensors | torch.save) writes for ``tensors``."""
    if kind == "safetensors":
        from safetensors.torch import save

        return save({k: v.contiguous() for k, v in tensors.items()})
    buffer = io.BytesIO()
    torch.save(dict(tensors), buffer)
    return buffer.getvalue()


def compressed(data: bytes) -> dict[str, int]:
    """Bytes after gzip and, where available, zstd."""
    out = {"gzip": len(gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0))}
    zstd = _zstd()
    if zstd is not None:
        out["zstd"] = len(zstd.ZstdCompressor(level=ZSTD_LEVEL).compress(data))
    return out


def param_counts(state: Mapping[str, torch.Tensor], spec: ModelSpec) -> tuple[int, int]:
    """(parameters, non-zero parameters): buffers such as BN running statistics are not parameters."""
    names = [n for n, _ in spec.build("meta").named_parameters()]
    return sum(state[n].numel() for n in names), sum(int(state[n].count_nonzero()) for n in names)


def measure_sizes(path: Path | str) -> dict[str, float]:
    """Sizes of an export folder under the names of :mod:`repro.records` (``size_*``)."""
    meta, tensors = read_export(Path(path))
    dense = decompress(tensors, meta["layers"])
    sparse_bytes = (Path(path) / meta["file"]).read_bytes()
    dense_bytes = serialize(dense, meta["container"])
    params, nonzero = param_counts(dense, ModelSpec(**meta["model"]))
    out = {rec.SIZE_DENSE_BYTES: len(dense_bytes), rec.SIZE_SPARSE_BYTES: len(sparse_bytes),
           rec.SIZE_DENSE_PAYLOAD_BYTES: tensor_bytes(dense), rec.SIZE_SPARSE_PAYLOAD_BYTES: tensor_bytes(tensors),
           rec.SIZE_PARAMS: params, rec.SIZE_NONZERO_PARAMS: nonzero}
    names = {"dense": (rec.SIZE_DENSE_GZIP_BYTES, rec.SIZE_DENSE_ZSTD_BYTES),
             "sparse": (rec.SIZE_SPARSE_GZIP_BYTES, rec.SIZE_SPARSE_ZSTD_BYTES)}
    for which, data in (("dense", dense_bytes), ("sparse", sparse_bytes)):
        packed = compressed(data)
        out[names[which][0]] = packed["gzip"]
        if "zstd" in packed:
            out[names[which][1]] = packed["zstd"]
    return {k: float(v) for k, v in out.items()}
