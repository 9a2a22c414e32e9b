"""``make bench`` / ``python tools/bench.py``: the script entry of the benchmark.

The benchmark itself is the package ``tools/bench/`` (what it measures and how: its
``__init__``); this file stays at its documented path so that ``make bench``, the commands in
``results/bench/README.md`` and the selection part's fresh worker processes (``python
tools/bench.py --selection-worker MODEL``, run by file path) keep working. Run as a script, this
file's folder is first on ``sys.path``, so ``bench`` below is the package, not this file.
"""

from __future__ import annotations

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
