"""repro.runtime: the malloc setting is applied once and says whether it took."""

from __future__ import annotations

import platform

import pytest

from repro import runtime


def test_keep_freed_memory_reports_whether_it_applied_and_is_idempotent():
    first = runtime.keep_freed_memory()
    assert isinstance(first, bool)
    assert runtime.keep_freed_memory() is first


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_applies_on_glibc():
    assert runtime.keep_freed_memory() is True



#: blocks of 1, 2, ..., 20 MiB, each written and freed. With glibc's defaults a block larger
#: than any freed before is a fresh mmap (the dynamic threshold only follows freed sizes), whose
#: pages all fault in on first touch: 210 MiB, about 53,800 faults. Kept on the heap, the heap
#: grows once to 20 MiB: about 5,100.
CHURN = """
import resource
def churn():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for mib in range(1, 21):
        block = bytearray(mib << 20)
        block[::4096] = b"x" * (len(block) // 4096)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_without_page_faults():
    """What the setting is for, measured by the kernel's fault count rather than read back from
    our own flag: a plain interpreter (no torch, no mallopt) faults on every block; this process,
    after keep_freed_memory(), only while its heap grows to the largest block."""
    import subprocess
    import sys

    plain = subprocess.run([sys.executable, "-c", CHURN + "print(churn())"], capture_output=True, text=True,
                           timeout=60, check=True)
    assert int(plain.stdout) > 40_000
    assert runtime.keep_freed_memory() is True
    scope: dict = {}
    exec(CHURN, scope)
    assert scope["churn"]() < 10_000
