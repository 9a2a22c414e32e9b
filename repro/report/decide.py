"""Verdicts that decide: the rule for each kind of claim, the reason, and the seeds that would settle it.

A verdict is only as good as the number of seeds behind it, so every rule here first asks
for :data:`MIN_SEEDS` values (two seeds give a t-interval, but one with 1 degree of freedom
whose width says little). The rules, with ``c`` the report's confidence (0.95 by default),
``alpha = 1 - c`` and ``t_q(k)`` the two-sided Student-t quantile at level ``q`` with ``k``
degrees of freedom:

- fewer than :data:`MIN_SEEDS` values (runs, or seed pairs): *inconclusive*, reason
  ``"n=<n> < 3 seeds"``;
- **at least x** / **equal to x** (``at_least`` / ``two_sided`` references): the ``c``
  t-interval of our mean against ``x +- tol`` by :func:`repro.report.stats.verdict`
  (``at_least``: reproduced if ``lo >= x - tol``, not reproduced if ``hi < x - tol``;
  ``two_sided``: reproduced if ``[lo, hi]`` lies inside ``[x - tol, x + tol]``, not reproduced
  if wholly outside);
- **within d pp of dense** (``claim_delta_vs_dense`` with ``two_sided``): an equivalence test
  (two one-sided tests, TOST) on the seed-paired differences PMP - dense: reproduced if the
  ``1 - 2 alpha`` (90%) t-interval lies strictly inside ``(x - d, x + d)``, not reproduced if
  the ``c`` (95%) interval lies strictly outside (``hi < x - d`` or ``lo > x + d``), else
  inconclusive; unpaired differences (no shared seeds) are inconclusive;
- **PMP at least as accurate as X** (``claim_relative``): a one-sided paired t-test of the
  mean difference PMP - X against the margin ``-tol``: with the one-sided ``c`` bounds
  ``mean -+ t_{2c-1}(n-1) s / sqrt(n)`` (the 90% two-sided interval at c = 0.95), reproduced if
  the lower bound is ``> -tol``, not reproduced if the upper bound is ``< -tol``, else
  inconclusive.

When a verdict is inconclusive, :func:`seeds_needed` says how many seeds would decide it if
the mean and std stayed as observed: the smallest ``n >= 3`` whose half-width
``t(n-1) * std / sqrt(n)``, at the level of the interval the rule would need, is below the
distance from the mean to the nearest boundary; :data:`NO_NUMBER` when the mean sits on a
boundary (within :data:`ON_BOUNDARY`) or no ``n <= MAX_SEEDS`` would do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from repro.report.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, Stats, t_quantile, verdict

#: the fewest values (seeds, or seed pairs) a verdict other than inconclusive needs
MIN_SEEDS = 3
#: beyond this many seeds a claim counts as undecidable at the observed spread
MAX_SEEDS = 1000
#: a mean this close to a boundary sits on it: no number of seeds decides it
ON_BOUNDARY = 1e-9
#: the seeds_needed text when no number of seeds would decide
NO_NUMBER = "no number would"


@dataclass(frozen=True)
class Decision:
    """A verdict, why (with the numbers), the rule applied, and the seeds that would decide it.

    ``seeds_needed`` is an int, :data:`NO_NUMBER`, or ``""`` (decided, or no spread to judge by).
    """

    verdict: str
    reason: str
    test: str
    seeds_needed: int | str = ""


def _finite(*xs: float) -> bool:
    return all(x is not None and np.isfinite(x) for x in xs)


def seeds_needed(mean: float, std: float, boundaries: Sequence[float], confidence: float) -> int | str:
    """The fewest seeds whose ``confidence`` t-interval at (mean, std) clears every boundary.

    Only the nearest boundary matters: the interval is centred on the mean. ``""`` without a
    finite mean and std (one seed: no spread to extrapolate from).
    """
    if not _finite(mean, std):
        return ""
    gap = min(abs(mean - b) for b in boundaries)
    if gap <= ON_BOUNDARY:
        return NO_NUMBER
    from scipy.stats import t

    ns = np.arange(2, MAX_SEEDS + 1)
    half = t.ppf((1.0 + confidence) / 2.0, ns - 1) * std / np.sqrt(ns)
    ok = np.flatnonzero(half < gap)
    return max(MIN_SEEDS, int(ns[ok[0]])) if len(ok) else NO_NUMBER


def _too_few(n: int, test: str, needed: int | str) -> Decision | None:
    if n < MIN_SEEDS:
        return Decision(INCONCLUSIVE, f"n={n} < {MIN_SEEDS} seeds", test, needed)
    return None


def _half(n: int, std: float, confidence: float) -> float:
    return t_quantile(confidence, n - 1) * std / math.sqrt(n) if n >= 2 and _finite(std) else float("nan")


def decide_interval(s: Stats, ref: float, tol: float, direction: str, confidence: float = 0.95) -> Decision:
    """at_least / two_sided: our ``confidence`` interval ``[s.lo, s.hi]`` against ``ref +- tol``."""
    bounds = [ref - tol] if direction == "at_least" else [ref - tol, ref + tol]
    test = f"{confidence:.0%} CI vs {'ref − tol' if direction == 'at_least' else 'ref ± tol'}"
    # a Welch interval's std is a standard error: no per-seed spread to extrapolate from
    needed = seeds_needed(s.mean, s.std, bounds, confidence) if s.kind != "unpaired" else ""
    early = _too_few(s.n, test, needed)
    if early:
        return early
    v = verdict(s.lo, s.hi, ref, tol, direction)
    ci = f"[{s.lo:.2f}, {s.hi:.2f}]"
    if direction == "at_least":
        reason = {REPRODUCED: f"lower bound {s.lo:.2f} ≥ {ref - tol:.2f}",
                  NOT_REPRODUCED: f"upper bound {s.hi:.2f} < {ref - tol:.2f}"}.get(
            v, f"{ci} contains {ref - tol:.2f}")
    else:
        band = f"[{ref - tol:.2f}, {ref + tol:.2f}]"
        reason = {REPRODUCED: f"{ci} inside {band}", NOT_REPRODUCED: f"{ci} wholly outside {band}"}.get(
            v, f"{ci} straddles an edge of {band}")
    return Decision(v, reason, test, needed if v == INCONCLUSIVE else "")


def decide_equivalence(s: Stats, ref: float, d: float, confidence: float = 0.95) -> Decision:
    """Within ``d`` of ``ref`` (TOST) on seed-paired differences: see the module docstring."""
    inner = max(0.0, 1.0 - 2.0 * (1.0 - confidence))  # 0.90 at confidence 0.95
    test = f"TOST: {inner:.0%} CI inside ref ± d"
    if s.kind == "unpaired":
        return Decision(INCONCLUSIVE, "fewer than 2 seeds shared with dense (unpaired): the equivalence test needs "
                        "seed-paired differences", test)
    lo_b, hi_b = ref - d, ref + d
    inside = lo_b < s.mean < hi_b
    # to show equivalence the inner interval must shrink inside; to refute it the outer one outside
    needed = seeds_needed(s.mean, s.std, [lo_b, hi_b], inner if inside else confidence)
    early = _too_few(s.n, test, needed)
    if early:
        return early
    h_in, h_out = _half(s.n, s.std, inner), _half(s.n, s.std, confidence)
    if not _finite(h_in, h_out, s.mean):
        return Decision(INCONCLUSIVE, "no interval", test, needed)
    band = f"({lo_b:+.2f}, {hi_b:+.2f})"
    i_lo, i_hi, o_lo, o_hi = s.mean - h_in, s.mean + h_in, s.mean - h_out, s.mean + h_out
    if lo_b < i_lo and i_hi < hi_b:
        return Decision(REPRODUCED, f"{inner:.0%} CI [{i_lo:.2f}, {i_hi:.2f}] inside {band}", test)
    if o_hi < lo_b or o_lo > hi_b:
        return Decision(NOT_REPRODUCED, f"{confidence:.0%} CI [{o_lo:.2f}, {o_hi:.2f}] wholly outside {band}", test)
    return Decision(INCONCLUSIVE, f"{inner:.0%} CI [{i_lo:.2f}, {i_hi:.2f}] not inside {band}; {confidence:.0%} CI "
                    f"[{o_lo:.2f}, {o_hi:.2f}] not wholly outside", test, needed)


def one_sided_bounds(s: Stats, confidence: float = 0.95) -> tuple[float, float]:
    """(lower, upper) one-sided ``confidence`` bounds of the mean: the ``2c - 1`` two-sided interval."""
    h = _half(s.n, s.std, 2.0 * confidence - 1.0)
    return s.mean - h, s.mean + h


def decide_relative(s: Stats, tol: float, confidence: float = 0.95) -> Decision:
    """PMP - X >= -tol on seed-paired differences (one-sided paired t-test): see the module docstring."""
    level = 2.0 * confidence - 1.0
    test = f"one-sided {confidence:.0%}: PMP − X ≥ −tol"
    needed = seeds_needed(s.mean, s.std, [-tol], level)
    early = _too_few(s.n, test, needed)
    if early:
        return early
    lo, hi = one_sided_bounds(s, confidence)
    if not _finite(lo, hi):
        return Decision(INCONCLUSIVE, "no interval", test, needed)
    if lo > -tol:
        return Decision(REPRODUCED, f"lower bound {lo:+.2f} > {-tol:+.2f}", test)
    if hi < -tol:
        return Decision(NOT_REPRODUCED, f"upper bound {hi:+.2f} < {-tol:+.2f}", test)
    return Decision(INCONCLUSIVE, f"bounds [{lo:+.2f}, {hi:+.2f}] contain {-tol:+.2f}", test, needed)
