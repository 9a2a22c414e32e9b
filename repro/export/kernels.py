"""The sparse-kernel model: Linear and Conv2d layers that multiply a CSR weight (``torch.sparse``).

What the sparsity buys in inference time depends on a kernel that skips the zeros; a dense
layer holding zeros does the same work as an unpruned one. Linear: ``addmm(bias, W_csr, x^T)``.
Conv2d: ``unfold`` to columns, then one CSR x dense product over the whole batch; it is kept
only where it reproduces the dense layer on a probe input (else the layer stays dense and is
reported as "no sparse kernel"). Groups other than 1 and non-zero padding modes stay dense.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

#: a sparse layer is kept only if it matches the dense one this closely on a probe input
RTOL = ATOL = 1e-5
NO_KERNEL = "no sparse kernel"


def csr_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight``'s 2-D view ``(out, -1)`` as a CSR tensor with int32 indices (zeros dropped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
        csr = weight.detach().reshape(weight.shape[0], -1).to_sparse_csr()
        return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape)


class SparseLinear(nn.Module):
    """``y = x W^T + b`` with W in CSR."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = csr_weight(linear.weight)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.bias is None:
            y = torch.sparse.mm(self.weight, flat.t())
        else:
            y = torch.addmm(self.bias.unsqueeze(1), self.weight, flat.t())
        return y.t().reshape(*x.shape[:-1], self.out_features)


class SparseConv2d(nn.Module):
    """A Conv2d (groups 1, zero padding) as unfold + one CSR matmul over all positions of the batch."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.out_channels, self.kernel_size = conv.out_channels, conv.kernel_size
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.weight = csr_weight(conv.weight)
        self.bias = None if conv.bias is None else conv.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        cols = cols.transpose(0, 1).reshape(cols.shape[1], b * oh * ow)  # (C*kh*kw, B*L)
        y = torch.sparse.mm(self.weight, cols)
        if self.bias is not None:
            y = y + self.bias.unsqueeze(1)
        return y.reshape(self.out_channels, b, oh, ow).transpose(0, 1).contiguous()


def _sparse_version(module: nn.Module) -> nn.Module | str:
    """The sparse layer for ``module``, or why there is none (then the dense layer stays)."""
    if isinstance(module, nn.Linear):
        return SparseLinear(module)
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            return f"{NO_KERNEL} (groups={module.groups}, padding={module.padding}, mode={module.padding_mode})"
        sparse = SparseConv2d(module)
        return sparse if _agrees(module, sparse) else f"{NO_KERNEL} (unfold + CSR matmul differs from conv2d)"
    return f"{NO_KERNEL} ({type(module).__name__})"


@torch.no_grad()
def _agrees(dense: nn.Conv2d, sparse: SparseConv2d) -> bool:
    """Whether the sparse conv reproduces the dense one on a small random probe (batch 2, 9x9)."""
    probe = torch.randn(2, dense.in_channels, 9, 9, generator=torch.Generator().manual_seed(0))
    return torch.allclose(sparse(probe), dense(probe), rtol=RTOL, atol=ATOL)


def sparse_model(model: nn.Module, names: Iterable[str]) -> tuple[nn.Module, dict[str, str]]:
    """A copy of ``model`` whose modules named in ``names`` (or whose weights are) use CSR kernels.

    Returns (model in eval mode, {module name: "csr" | "no sparse kernel (why)"}).
    """
    wanted = {n.removesuffix(".weight") for n in names}
    out = copy.deepcopy(model).eval()
    kinds: dict[str, str] = {}
    for name, module in list(out.named_modules()):
        if name not in wanted:
            continue
        replacement = _sparse_version(module)
        if isinstance(replacement, str):
            kinds[name] = replacement
            continue
        parent, _, leaf = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, leaf, replacement)
        kinds[name] = "csr"
    return out, kinds
