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

