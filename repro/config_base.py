"""What a config schema needs that plug-ins share: the pruner base schema, numeric ranges and the
error a user fixes. It imports nothing of the package, so a method module can define its own
schema here-based without importing :mod:`repro.config` (which imports every method module to
collect their schemas)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A configuration that composes but cannot run; the message names the fix."""


@dataclass
class PrunerConfig:
    """What every pruning method shares: the prunable set and how scores are ranked."""

    name: str = "dense"
    #: global | layerwise (= uniform) | er | erk: how the sparsity is spread over layers
    scope: str = "global"
    exclude_first: bool = False
    exclude_last: bool = False
    #: layer names never pruned, as shell patterns (LTH's ResNets keep shortcuts dense: ['*downsample*'])
    exclude: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Range:
    """The allowed interval of one numeric key and what to write instead when a value falls
    outside it (the second half of a "key=value: what to do" message)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself is not allowed
    hi_open: bool = False  # hi itself is not allowed
    fix: str = ""

    def holds(self, value: float) -> bool:
        """Whether ``value`` lies in the interval (NaN and infinities never do)."""
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return not (self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)))
