"""What a mutant is, and the test files that kill them (shared by the catalogues of this package)."""

from __future__ import annotations

from dataclasses import dataclass

SCORING = "tests/test_scoring_mutants.py"
REGROW = "tests/test_regrow.py"
CONTRACT = "tests/test_contract.py"
BEHAVIOURS = "tests/test_untested_behaviours.py"
LATENCY = "tests/test_export_latency.py"
REPORT_LATENCY = "tests/test_report_latency.py"
SELECTION = "tests/test_report_selection.py"


@dataclass(frozen=True)
class Mutant:
    """One plausible bug: replace ``old`` (exactly one occurrence in ``file``) by ``new``."""

    name: str
    file: str
    old: str
    new: str
    #: pytest node ids or files that must fail with the mutant applied
    tests: tuple[str, ...]
    why: str = ""
