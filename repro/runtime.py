"""Process-wide settings the suite runs under, beyond torch's own (threads, determinism).

``keep_freed_memory``: with glibc's defaults a tensor of more than about 128 KiB that is
freed and allocated again often comes back as a fresh ``mmap``, whose pages fault in on
first touch. On the 2-core development VM that cost about 0.3 ms per MiB, several times the
arithmetic of the op that asked for the memory (``torch.empty(266200).fill_(0)``: 282-312 us
with the defaults, 10 us with the settings below). It made global mask selection (a few float
buffers the size of the weights) slow by turns; the training loop in steady state hardly
faults either way (``make bench`` records the faults per window). PyTorch's performance
guide suggests jemalloc or tcmalloc for the same reason; ``mallopt`` gets this effect
without a preload.

``resolve_precision`` / ``use_precision``: what ``trainer.precision`` means on the device at hand
(bf16 only where the GPU computes it natively; fp32 without TF32 convolutions).
"""

from __future__ import annotations

import ctypes
import logging

import torch

log = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's ceiling for the mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
MMAP_THRESHOLD = 32 << 20
#: freed memory at the top of the heap kept for reuse before it is returned to the system
TRIM_THRESHOLD = 256 << 20

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Serve allocations up to 32 MiB from the heap and keep up to 256 MiB of freed memory for
    reuse (glibc only; a no-op returning False elsewhere). Process-wide and not undone: the
    price is a resident set that can stay up to 256 MiB above what is in use."""
    global _applied
    if _applied is None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            _applied = False
        else:
            _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        log.debug("malloc tuned for reuse: %s", _applied)
    return _applied


def applied() -> bool:
    """Whether :func:`keep_freed_memory` has run in this process and took effect."""
    return bool(_applied)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the GPU computes it natively (compute capability 8.0 and newer), fp32
    elsewhere. On older GPUs (V100, T4) ``torch.autocast`` accepts bf16 but emulates it, slower
    than fp32, so auto does not pick it there; an explicit ``bf16`` is still honoured."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16"
    return "fp32"


def use_precision(precision: str) -> dict[str, str]:
    """Make ``fp32`` mean fp32: PyTorch lets cuDNN convolutions use TF32 by default (matmuls
    not), so an fp32 CNN run on an Ampere or newer GPU would mix TF32 convolutions with fp32
    linear layers. bf16 runs keep PyTorch's defaults. Process-wide, set for every job (a reused
    worker process carries nothing over); returns the settings for the run's tags. Uses the
    legacy flags only: mixing them with the ``fp32_precision`` API makes PyTorch raise."""
    torch.backends.cudnn.allow_tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = False
    return {"tf32_cudnn": str(torch.backends.cudnn.allow_tf32).lower(),
            "tf32_matmul": str(torch.backends.cuda.matmul.allow_tf32).lower()}
