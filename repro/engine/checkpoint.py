"""Checkpoints: what a run saves at epoch ends, written atomically, and how it resumes.

Everything a resumed run needs to continue exactly as an uninterrupted one would (on
CPU) is in the checkpoint: weights and masks, optimizer state, the method's state (LTH's
round and rewind weights), the loop's position and history, and the RNG state. Data
order and augmentation are a function of (seed, epoch), so they need no saving.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` through a temporary file and a rename: never half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path: Path, device: torch.device) -> dict[str, Any]:
    """A checkpoint written by :func:`save_atomic`, its tensors on ``device``."""
    return torch.load(path, map_location=device, weights_only=False)


def restore_rng(state: torch.Tensor) -> None:
    """Restore the CPU generator; ``map_location`` moved its state with the rest, so it comes back."""
    torch.set_rng_state(state.cpu())
