"""Pruning: masks, schedules, scores, and the methods that plug into the training loop.

Importing this package registers every method module in ``methods.REGISTRY``.
"""

from repro.pruning import (
    at_init,  # noqa: F401  (SNIP, GraSP, SynFlow, random, magnitude at init)
    iterative,  # noqa: F401  (LTH, one-shot, mask transfer)
    methods,  # noqa: F401  (registry, dense, PMP, GMP)
)
