"""Statistics of the report: t-intervals, differences to dense, verdicts.

Pure functions of numbers, kept apart from pandas and MLflow so that every rule the report
states in table.md (interval, pairing, verdict) is checked against hand computations.

Verdict rule: with ``ref`` the reference value, ``tol`` its tolerance and ``[lo, hi]`` the
t-interval of our mean (or of the paired difference to dense), ``at_least`` claims are
*reproduced* when ``lo >= ref - tol``, *not reproduced* when ``hi < ref - tol``;
``two_sided`` claims are *reproduced* when ``[lo, hi]`` lies inside ``ref +- tol``, *not
reproduced* when it lies wholly outside; everything else, and any group with fewer than two
seeds, is *inconclusive*.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NO_RUNS = "reproduced", "not reproduced", "inconclusive", "no runs"
NAN = float("nan")


@dataclass
class Stats:
    """Mean, sample std, count and a two-sided Student-t interval of the mean."""

    n: int
    mean: float
    std: float
    lo: float
    hi: float
    kind: str = "runs"  # runs | paired | unpaired


def t_quantile(confidence: float, df: float) -> float:
    """Two-sided Student-t quantile (scipy imported late: the CLI starts faster without it)."""
    from scipy.stats import t

    return float(t.ppf((1.0 + confidence) / 2.0, df))


def t_interval(values: Iterable[float], confidence: float = 0.95, kind: str = "runs") -> Stats:
    """Student-t interval of the mean of the finite values (no interval below two values)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Stats(0, NAN, NAN, NAN, NAN, kind)
    mean = float(x.mean())
    if n < 2:
        return Stats(1, mean, NAN, NAN, NAN, kind)
    std = float(x.std(ddof=1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half, kind)


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Stats:
    """Interval of mean(a) - mean(b) for independent samples (Welch-Satterthwaite df)."""
    a = np.asarray([v for v in a if np.isfinite(v)], dtype=float)
    b = np.asarray([v for v in b if np.isfinite(v)], dtype=float)
    if len(a) == 0 or len(b) == 0:
        return Stats(0, NAN, NAN, NAN, NAN, "unpaired")
    diff = float(a.mean() - b.mean())
    n = min(len(a), len(b))
    if len(a) < 2 or len(b) < 2:
        return Stats(n, diff, NAN, NAN, NAN, "unpaired")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Stats(n, diff, 0.0, diff, diff, "unpaired")
    df = se**4 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(confidence, df) * se
    return Stats(n, diff, se, diff - half, diff + half, "unpaired")


def difference(ours: dict[Any, float], base: dict[Any, float], confidence: float = 0.95) -> Stats:
    """ours - base: paired by seed where at least two seeds are shared (seed noise cancels), else Welch."""
    common = sorted(set(ours) & set(base), key=str)
    if len(common) >= 2:
        return t_interval([ours[s] - base[s] for s in common], confidence, kind="paired")
    return welch_interval(list(ours.values()), list(base.values()), confidence)


def verdict(lo: float, hi: float, ref: float, tol: float, direction: str = "two_sided") -> str:
    """reproduced / not reproduced / inconclusive for an interval against ref +- tol."""
    if not (np.isfinite(lo) and np.isfinite(hi) and np.isfinite(ref)):
        return INCONCLUSIVE
    if direction == "at_least":
        if lo >= ref - tol:
            return REPRODUCED
        if hi < ref - tol:
            return NOT_REPRODUCED
        return INCONCLUSIVE
    if direction != "two_sided":
        raise ValueError(f"direction '{direction}': use at_least or two_sided")
    if ref - tol <= lo and hi <= ref + tol:
        return REPRODUCED
    if hi < ref - tol or lo > ref + tol:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim over several groups: all reproduced, any not, else inconclusive."""
    if not verdicts:
        return NO_RUNS
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return INCONCLUSIVE
