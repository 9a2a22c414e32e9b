"""The catalogue of named mutants that ``tools/mutants.py`` applies, one module per part of the code
they break (:mod:`.training`, :mod:`.report`); :class:`.spec.Mutant` says what one is."""

from __future__ import annotations

from .report import REPORT
from .spec import Mutant
from .training import TRAINING

MUTANTS: tuple[Mutant, ...] = TRAINING + REPORT

__all__ = ["MUTANTS", "Mutant"]
