"""The learning-rate schedule as a pure function of the optimizer step.

A pure function (no scheduler object with state) means a resumed run or an LTH cycle
rewound to step k needs nothing but the step to continue with the right LR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def lr_factor(optim: Any, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """LR multiplier as a pure function of the step: warmup, then multistep/cosine/constant.

    Multistep milestones are fractions of the run rounded to whole epochs.
    """
    total = steps_per_epoch * epochs
    warm = optim.warmup_epochs * steps_per_epoch
    marks = [max(1, math.floor(m * epochs + 0.5)) * steps_per_epoch for m in optim.milestones]

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if optim.lr_schedule == "multistep":
            return optim.gamma ** sum(step >= m for m in marks)
        if optim.lr_schedule == "cosine":
            t = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
        return 1.0

    return factor
