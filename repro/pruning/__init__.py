"""Pruning: masks, schedules, scores, and the methods that plug into the training loop.

Importing this package imports every module in it, so a method module registers itself in
``methods.REGISTRY`` by existing: adding a method touches no list here.
"""

import importlib
import pkgutil

from repro.pruning import methods  # noqa: F401  (registry, dense, PMP, GMP) first: the others import it

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
