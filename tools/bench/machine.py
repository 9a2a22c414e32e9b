"""The facts a benchmark result records about where it ran: platform, CPU model and usable CPUs,
torch threads and versions, load average, GPU; and the checkout's commit. Apart from the
measurements so that every result carries the same description of its machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from repro.tracking import git_info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_state() -> dict[str, str]:
    """The checkout's commit and dirty flag, as runs record them (``repro.tracking.git_info``)."""
    info = git_info()
    return {"commit": info["git_commit"], "dirty": info["git_dirty"]}


def machine_info(device: torch.device) -> dict[str, Any]:
    import torchvision

    info: dict[str, Any] = {
        "platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
