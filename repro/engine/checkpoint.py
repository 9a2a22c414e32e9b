"""Checkpoints: what a run saves at epoch ends, written atomically, and how it resumes.

Everything a resumed run needs to continue exactly as an uninterrupted one would (on
CPU) is in the checkpoint: weights and masks, optimizer state, the method's state (LTH's
round and rewind weights), the loop's position and history, and the RNG state. Data
order and augmentation are a function of (seed, epoch), so they need no saving.

A checkpoint that cannot be read (truncated by a full disk, empty, another program's file
under the run's name) would fail every rerun of the run with torch's text; instead it is
moved aside, named in a warning, and the run starts from the beginning.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

#: what every checkpoint holds (``Engine.checkpoint``): a file without them is not one of ours
KEYS = frozenset({"model", "optimizer", "method", "loop", "rng"})


class CorruptCheckpoint(RuntimeError):
    """A checkpoint file that cannot be resumed from; it has been moved aside."""


def save_atomic(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` through a temporary file and a rename: never half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint written by :func:`save_atomic`, its tensors on ``device``. A file that cannot
    be read is moved aside and refused naming both paths (a rerun then starts afresh); a good
    file that fails to load on ``device`` (out of memory) is left where it is."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=False)
        _check_keys(ckpt)
    except Exception as exc:
        problem = _problem(path)
        if problem is None:
            raise
        aside = set_aside(path, problem)
        raise CorruptCheckpoint(f"checkpoint {path} cannot be read ({_reason(problem)}); moved it to {aside}: "
                                "run the command again to start afresh") from exc
    return ckpt


def set_aside_if_unreadable(path: Path) -> Path | None:
    """Move an unreadable checkpoint aside and return where it went, so that the run starts
    fresh instead of failing on it at every rerun. None: the file is fine or absent."""
    if not path.is_file():
        return None
    problem = _problem(path)
    return None if problem is None else set_aside(path, problem)


def _problem(path: Path) -> Exception | None:
    """Why ``path`` is not a readable checkpoint, or None. Cheap: memory-mapped on the CPU, so
    the tensors' bytes are not read (a truncated file loses its zip index at the end)."""
    try:
        _check_keys(torch.load(path, map_location="cpu", weights_only=False, mmap=True))
    except Exception as exc:  # noqa: BLE001 - whatever torch or pickle say, the file is unusable
        return exc
    return None


def set_aside(path: Path, exc: BaseException) -> Path:
    """Rename an unreadable checkpoint to ``<name>.corrupt-<time>`` (kept to inspect) and say so."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    log.warning("checkpoint %s cannot be read (%s): moved it to %s; the run starts from the beginning",
                path, _reason(exc), aside)
    return aside


def _check_keys(ckpt: Any) -> None:
    if not isinstance(ckpt, dict) or not KEYS <= ckpt.keys():
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"not a checkpoint of this suite: expected keys {sorted(KEYS)}, found {found}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def restore_rng(state: torch.Tensor) -> None:
    """Restore the CPU generator; ``map_location`` moved its state with the rest, so it comes back."""
    torch.set_rng_state(state.cpu())
