"""Golden files: the report of the synthetic store in test_report.py must not change by accident.

The files under tests/golden/report/ were first written by the report before it was split
into a package, and rewritten on purpose when the verdicts changed (issue 14: at least 3
seeds, TOST, reasons and seeds needed, claim_relative in relative.csv, the paper-style table
at the top of table.md); a refactor that changes one number, note, column or line of the
output fails here.
Only what differs from run to run is normalised before comparing:

- MLflow run ids (random uuids) become ``<run NN>``, numbered by the runs' start times;
  both the full id (table.csv ``run_ids``) and its 12-character prefix (table.md, left-out
  runs) are replaced;
- the provenance lines of table.md that name the command (temporary paths), the report's
  own commit, the date, the machine and the tracking URI (a temporary path) keep their key
  and lose their value (``<normalised>``); ``run commits`` comes from the store and stays.

PNGs are compared by name and order only (their bytes depend on the matplotlib build).
Set ``REPRO_UPDATE_GOLDEN=1`` to rewrite the golden files after a deliberate change of output.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pytest

from tests.test_report import _report, make_store

GOLDEN = Path(__file__).resolve().parent / "golden" / "report"
#: provenance keys whose values depend on the machine, the clock, the checkout or the temp dir
VOLATILE = ("command", "report commit", "date", "machine", "tracking")


def _run_names(client, exp_id: str) -> dict[str, str]:
    """run id -> ``<run NN>``, numbered by start time (the fixture gives every run its own)."""
    runs = client.search_runs([exp_id], run_view_type=3, max_results=1000)
    ordered = sorted(runs, key=lambda r: (r.info.start_time, r.info.run_name))
    return {r.info.run_id: f"<run {i:02d}>" for i, r in enumerate(ordered)}


def normalise(text: str, names: dict[str, str]) -> str:
    """Replace what differs between two reports of the same store (see the module docstring)."""
    for rid, name in names.items():
        text = text.replace(rid, name)
    for rid, name in names.items():
        text = text.replace(rid[:12], name)
    keys = "|".join(re.escape(k) for k in VOLATILE)
    return re.sub(rf"^- \*\*({keys})\*\*: .*$", r"- **\1**: <normalised>", text, flags=re.MULTILINE)


def _check(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("REPRO_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    expected = path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), f"golden/{name}",
                                            f"report/{name}", n=1))
        pytest.fail(f"{name} differs from its golden file:\n{diff[:6000]}")


def test_report_output_matches_golden_files(mlflow_uri, tmp_path):
    store = make_store(mlflow_uri, tmp_path)
    rep = _report(store, "--no-log")
    names = _run_names(store["client"], store["exp"])
    out = store["out"]
    for name in ("table.csv", "claims.csv", "relative.csv", "table.md"):
        _check(name, normalise((out / name).read_text(), names))
    _check("files.txt", "".join(f"{p.name}\n" for p in rep.files))
    if os.environ.get("REPRO_UPDATE_GOLDEN") == "1":
        pytest.skip(f"golden files rewritten under {GOLDEN}")
