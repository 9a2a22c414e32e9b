"""``make gpu-check`` / ``python tools/gpu_check.py``: the script entry of the GPU check.

The check itself is the package ``tools/gpu_check/`` (what it does, in what order, under which
budget: its ``__init__``); this file stays at its documented path because the device command
runs it by file (``PYTHONUNBUFFERED=1 python3 tools/gpu_check.py`` from the repository root), as
do ``make gpu-check`` and ``make gpu-pack``. Run as a script, this file's folder is first on
``sys.path``, so ``gpu_check`` below is the package, not this file. Standard library only until
the check has made Hydra importable on the device.
"""

from __future__ import annotations

import sys

from gpu_check.cli import main

if __name__ == "__main__":
    sys.exit(main())
