"""The GPU check's pure arithmetic and limits, tested in-process: how many epochs fit in what is
left of the budget, the cap of each training run, and what under the output folder the device's
tool would not bring back (file count, depth, names, kinds, bytes). Apart from the phases so that
these decisions are checked without a device or a run."""

from __future__ import annotations

import math
import re
from pathlib import Path

#: what the device's tool brings back from $OUT
OUT_LIMITS = {"files": 8, "depth": 2, "file_bytes": 16 << 20, "total_bytes": 64 << 20}
OUT_SUFFIXES = (".json", ".md")
CARRY_LIMIT_BYTES = 64 << 20
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def epochs_allowed(epoch_s: float, remaining_s: float, *, runs: int = 2, overhead_s: float = 25.0,
                   eval_fraction: float = 0.1, safety: float = 0.85, max_epochs: int = 160) -> int:
    """How many epochs each of ``runs`` training runs may have so that all of them fit in
    ``remaining_s``: each run pays ``overhead_s`` (process start, imports, data) once and
    ``epoch_s * (1 + eval_fraction)`` per epoch (training plus the test pass); ``safety`` keeps a
    margin for a slower machine than the one measured. 0 means not even one epoch fits."""
    if epoch_s <= 0 or runs < 1:
        raise ValueError(f"epoch_s={epoch_s} and runs={runs} must be positive")
    usable = remaining_s * safety - runs * overhead_s
    if usable <= 0:
        return 0
    return max(0, min(max_epochs, math.floor(usable / (runs * epoch_s * (1.0 + eval_fraction)))))


def run_estimate(epochs: int, epoch_s: float, *, overhead_s: float, eval_fraction: float) -> float:
    """Expected wall seconds of one training run (the same arithmetic as :func:`epochs_allowed`)."""
    return overhead_s + epochs * epoch_s * (1.0 + eval_fraction)


def run_cap(remaining_s: float, this_s: float, later_s: float) -> float:
    """The wall-time cap of one training run: what is left after reserving the estimates of the
    runs still to come, but never less than this run's own estimate (the plan fitted both; a
    slower run is stopped at its cap and resumes in the next call)."""
    return max(min(this_s, remaining_s), remaining_s - later_s)


def output_problems(root: Path, limits: dict[str, int] = OUT_LIMITS,
                    suffixes: tuple[str, ...] = OUT_SUFFIXES) -> list[str]:
    """What under ``root`` the device would not bring back (or we promised not to write): more than
    ``files`` files, a file more than ``depth`` folders down, a name outside letters, digits,
    '.', '_' and '-', a link or other non-file, a kind other than JSON/markdown, or too many bytes."""
    if not root.is_dir():
        return [f"{root} is not a folder"]
    problems: list[str] = []
    files, total = [], 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(not SAFE_NAME.match(part) for part in rel.parts):
            problems.append(f"{rel}: name outside [A-Za-z0-9._-]")
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            problems.append(f"{rel}: not a plain file or folder")
            continue
        if path.is_dir():
            continue
        files.append(rel)
        if len(rel.parts) - 1 > limits["depth"]:
            problems.append(f"{rel}: {len(rel.parts) - 1} folders down (at most {limits['depth']})")
        if path.suffix not in suffixes:
            problems.append(f"{rel}: not {'/'.join(suffixes)}")
        size = path.stat().st_size
        total += size
        if size > limits["file_bytes"]:
            problems.append(f"{rel}: {size} bytes (at most {limits['file_bytes']})")
    if len(files) > limits["files"]:
        problems.append(f"{len(files)} files (at most {limits['files']})")
    if total > limits["total_bytes"]:
        problems.append(f"{total} bytes in all (at most {limits['total_bytes']})")
    return problems
