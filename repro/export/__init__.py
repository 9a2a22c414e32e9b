"""From mask to deployable model: the pruned subnetwork in a compressed layout, its sizes and speed.

``repro-export <run id | checkpoint path> --out DIR`` writes the subnetwork of a trained run;
:func:`load_exported` rebuilds it as a plain ``nn.Module`` (no masks) whose outputs equal the
masked model's bit for bit, since every kept value is copied, never recomputed.

The layout, our convention (``LAYOUT = "csr"``, version 1)
-----------------------------------------------------------
``DIR/model.safetensors`` when the ``safetensors`` package is installed, else ``DIR/model.pt``
(``torch.save`` of the same flat dict; ``model.json`` names the file and its ``container``).
The file holds only plain tensors, keyed by state-dict name:

- every weight that carried a mask (a ``<module>.weight_mask`` buffer, see
  :mod:`repro.pruning.masks`) as CSR over its 2-D view: Linear ``(out, in)``; Conv2d flattened
  to ``(out, in*kh*kw)`` in PyTorch's memory order, so ``view(out, -1)`` and back is exact:

  - ``<name>.crow_indices``: int32 (int64 only past 2**31-1 entries), ``rows + 1`` entries,
    ``crow[0] = 0``, ``crow[-1] = nnz``, non-decreasing;
  - ``<name>.col_indices``: same dtype, ``nnz`` column indices, increasing within each row;
  - ``<name>.values``: the weight's dtype (fp32), ``nnz`` values;

  the kept positions are the mask's ones (a kept weight that happens to be 0.0 is stored);
- everything else dense under its own name (biases, BatchNorm weights and running statistics,
  ``num_batches_tracked``, layers excluded from pruning); the masks themselves are dropped:
  the CSR structure is the mask.

CSR rather than a bitmap: CSR is what ``torch.sparse`` multiplies directly (the sparse-kernel
model of :mod:`repro.export.kernels` uses the stored tensors as they are), and it shrinks with
sparsity (8 bytes per kept fp32 weight plus 4 per row), where a bitmap costs ``numel/8`` bytes at
any sparsity; a bitmap is smaller below about 97% sparsity, CSR above it.

``DIR/model.json`` (metadata keys): ``format`` ("repro-export"), ``version`` (1), ``layout``
("csr"), ``container`` ("safetensors" | "torch.save"), ``file``, ``source`` (the run id or path
exported), ``model`` (``name``, ``width``, ``in_channels``, ``num_classes``: what
:func:`repro.models.build` needs), ``layers`` (per CSR weight: ``shape``, ``nnz``, ``numel``,
``index_dtype``), ``dense`` (the names stored dense) and ``sizes`` (:func:`measure_sizes`).
"""

from __future__ import annotations

from repro.export.kernels import sparse_model
from repro.export.latency import measure_latency
from repro.export.layout import LAYOUT, ExportError, export_state, load_exported, read_export
from repro.export.sizes import measure_sizes

__all__ = ["LAYOUT", "ExportError", "export_state", "load_exported", "measure_latency", "measure_sizes",
           "read_export", "sparse_model"]
