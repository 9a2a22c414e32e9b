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
"""

from __future__ import annotations

import ctypes
import logging

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
