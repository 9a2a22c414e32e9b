"""The table a paper would print: methods down, target sparsities across, one block per setting.

The long per-group table answers "what exactly was run"; this one answers "how do the
methods compare", which is what a reader of the paper looks for first. One block per
(model, dataset, data source, epochs); a row per method (dense first, as its own row in the
0% column); a cell per target sparsity holding ``mean ± std (n)`` of the final accuracy in %.
A literature or paper number for the same model, dataset, method and sparsity is set in the
same cell as ``98.4*``, with a footnote naming the reference id, its metric and its source,
so that a starred number is never mistaken for one of ours. References at sparsities we did
not run are listed under the block rather than given columns of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from repro.report.aggregate import GROUP_SHORT, lookalikes
from repro.report.claims import under_recipe
from repro.report.reading import GROUP_COLUMN

#: what one block of the paper table shares
BLOCK_KEYS = ["model", "dataset", "data_source", "epochs"]
#: a reference sparsity falls in a column within this many (fractional) points
COLUMN_MATCH = 0.005
#: the mark of a reference number in a cell (escaped: a bare * would start emphasis in markdown)
STAR = "\\*"


def cell_text(mean: float, std: float, n: int) -> str:
    """``mean ± std (n)`` of a group's final accuracy; ``mean (1)`` for a single seed."""
    if not np.isfinite(mean):
        return ""
    spread = f" ± {std:.2f}" if np.isfinite(std) else ""
    return f"{mean:.2f}{spread} ({int(n)})"


def ref_text(accuracy: float) -> str:
    """A reference number as it appears in a cell: ``98.4*`` (escaped for markdown)."""
    return f"{accuracy:g}{STAR}"


def _label(g: pd.Series, twin: bool) -> str:
    label = str(g["method"])
    if g["width"] != 1.0:
        label += f" (width {g['width']:g})"
    if twin:
        label += f" [group {str(g.get(GROUP_COLUMN, ''))[:GROUP_SHORT] or '(none)'}]"
    return label


def _column(target: float, columns: Sequence[float]) -> float | None:
    for c in columns:
        if abs(c - target) <= COLUMN_MATCH:
            return c
    return None


def _ref_columns(ref: pd.Series, columns: Sequence[float]) -> list[float]:
    """The block's columns a reference speaks about: its sparsity, or every column in its range."""
    lo, hi = ref["sparsity"], ref["sparsity_max"]
    if not np.isfinite(lo):
        return []
    if np.isfinite(hi):
        return [c for c in columns if lo - COLUMN_MATCH <= c <= hi + COLUMN_MATCH]
    c = _column(lo, columns)
    return [] if c is None else [c]


def block_table(block: pd.DataFrame, refs: pd.DataFrame, dense_methods: Sequence[str]) -> tuple[list[str], list[list[str]],
                                                                                                list[str]]:
    """(header, rows, footnotes) of one block: our groups, then the references starred in their cells."""
    columns = sorted(block["target"].unique())
    twins = lookalikes(block)
    cells: dict[str, dict[float, list[str]]] = {}
    order: list[tuple[Any, ...]] = []
    for idx, g in block.iterrows():
        label = _label(g, bool(twins.get(idx, False)))
        if label not in cells:
            cells[label] = {}
            order.append((g["method"] not in dense_methods, g["method"], g["width"], label))
        cells[label].setdefault(g["target"], []).append(cell_text(g["final_mean"], g["final_std"], g["n"]))
    footnotes, elsewhere = [], []
    if not refs.empty:
        first = block.iloc[0]
        mine = refs[(refs["our_model"] == first["model"]) & (refs["dataset"] == first["dataset"])
                    & (refs["kind"] != "claim_delta_vs_dense") & refs["accuracy"].notna()]
        for _, ref in mine.iterrows():
            if not under_recipe(ref, block).any():  # another recipe's number (SNIP's SGD beside LTH's Adam)
                continue
            dense = ref["method"] in dense_methods
            where = [0.0] if dense and 0.0 in columns else _ref_columns(ref, columns)
            metric = ref["metric"] or "metric unknown"
            if not where:
                elsewhere.append(f"`{ref['id']}` ({ref['method']} at {100 * ref['sparsity']:g}%: {ref['accuracy']:g}, "
                                 f"{metric})")
                continue
            if ref["method"] not in cells:
                cells[ref["method"]] = {}
                order.append((not dense, ref["method"], 1.0, ref["method"]))
            for c in where:
                cells[ref["method"]].setdefault(c, []).append(ref_text(ref["accuracy"]))
            at = ", ".join(f"{100 * c:g}%" for c in where)
            footnotes.append(f"{STAR} {ref['method']} at {at}: {ref['accuracy']:g} is `{ref['id']}` ({metric}; "
                             f"{ref['source']}; verified: {ref['verified']})")
    header = ["method", *[f"{100 * c:g}%" + (" (dense)" if c == 0.0 else "") for c in columns]]
    rows = [[label, *["; ".join(cells[label].get(c, [])) for c in columns]] for *_, label in sorted(order)]
    if elsewhere:
        footnotes.append("References at sparsities not run here: " + ", ".join(elsewhere) + ".")
    return header, rows, footnotes


def blocks(groups: pd.DataFrame, refs: pd.DataFrame,
           dense_methods: Sequence[str]) -> list[tuple[str, list[str], list[list[str]], list[str]]]:
    """(heading, header, rows, footnotes) per block, in the order of the block keys."""
    out = []
    for key, block in groups.groupby(BLOCK_KEYS, sort=True, dropna=False):
        model, dataset, source, epochs = key
        out.append((f"{model} · {dataset} · {source} data · {epochs:g} epochs", *block_table(block, refs, dense_methods)))
    return out
