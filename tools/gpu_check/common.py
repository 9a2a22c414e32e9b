"""What every part of the GPU check shares: the checkout's folders (the carry, the state), the
schema and the one-seed note of the results, the packages ``make gpu-pack`` carries, the date and
the command line as recorded. Standard library only: imported before Hydra is on the path."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from pathlib import Path

#: the checkout (this file is tools/gpu_check/common.py)
ROOT = Path(__file__).resolve().parent.parent.parent
TOOLS = ROOT / "tools"
CARRY = ROOT / ".gpu-carry"
WHEELS = CARRY / "wheels"
STATE_ROOT = ROOT / ".cache" / "gpu-check"
SCHEMA = 1
NOTE = ("one seed decides nothing: a single run per method at a shortened schedule shows that the GPU path works "
        "and what an epoch costs, not whether PMP matches its dense baseline (that needs several seeds and the "
        "full 160 epochs)")
#: the pinned versions the suite is tested with; antlr4 4.9.3 has no wheel on PyPI
PACK_PACKAGES = ("hydra-core", "omegaconf", "antlr4-python3-runtime")


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line() -> str:
    return shlex.join([Path(sys.executable).name, *sys.argv])
