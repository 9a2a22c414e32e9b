"""Sparsity schedules: pure functions of progress through the pruning window.

``sparsity_at(name, t, s_i, s_f)`` maps t in [0, 1] (0 = window start, 1 = window end)
to a target sparsity; every schedule starts at ``s_i`` and ends exactly at ``s_f``.
"""

from __future__ import annotations

from collections.abc import Callable


def linear(t: float, s_i: float, s_f: float) -> float:
    """The PMP paper's ramp: equal sparsity increments per update."""
    return s_i + (s_f - s_i) * t


def cubic(t: float, s_i: float, s_f: float) -> float:
    """Zhu & Gupta (2017): fast early pruning, slowing as the target nears."""
    return s_f + (s_i - s_f) * (1.0 - t) ** 3


def exponential(t: float, s_i: float, s_f: float) -> float:
    """Density decays geometrically: each update removes the same fraction of survivors."""
    return 1.0 - (1.0 - s_i) * ((1.0 - s_f) / (1.0 - s_i)) ** t


def constant(t: float, s_i: float, s_f: float) -> float:
    """The final sparsity at once (one-shot at the window start)."""
    return s_f


SCHEDULES: dict[str, Callable[[float, float, float], float]] = {
    "linear": linear,
    "cubic": cubic,
    "exponential": exponential,
    "constant": constant,
}


def sparsity_at(name: str, t: float, s_i: float, s_f: float) -> float:
    """Target sparsity at progress ``t`` (clamped to [0, 1]); exact endpoints."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule '{name}': choose one of {', '.join(SCHEDULES)}")
    t = min(max(t, 0.0), 1.0)
    if t >= 1.0:
        return s_f
    return SCHEDULES[name](t, s_i, s_f)
