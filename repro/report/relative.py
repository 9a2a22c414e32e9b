"""claim_relative: PMP against every other method of our own runs, paired by seed.

The paper's claim that matters most is not a number from its tables but "PMP is at least as
accurate as X at sparsity s" (X = SNIP, GraSP, GMP, LTH, dense, ...). That claim can be
checked on our own runs alone, and only fairly where everything but the method is the same,
so a PMP group is compared with another method's group only when they share:

- the table's visible keys but the method: model, dataset, data source, epochs (per cycle:
  an LTH target run is the nested run of a chain at that sparsity, trained ``trainer.epochs``
  per round), width;
- the recipe: ``optim.name``, ``optim.lr``, ``trainer.batch_size``, ``data.val_size`` (see
  :func:`repro.report.aggregate.recipe`; a param neither logged counts as equal);
- the target sparsity (a dense group, target 0, is compared with PMP at every target).

Runs are paired by seed (the same seed: same initialisation and data order where the methods
allow), seeds without a partner are left out, and the paired differences PMP - X are judged
by :func:`repro.report.decide.decide_relative`:

    reproduced      if  mean - t_{2c-1}(n-1) * s / sqrt(n)  >  -tol   (lower one-sided c bound)
    not reproduced  if  mean + t_{2c-1}(n-1) * s / sqrt(n)  <  -tol   (upper one-sided c bound)
    inconclusive    otherwise, and always with fewer than 3 seed pairs

with ``c`` the report's confidence (0.95: ``t_{0.90}``, the 95% one-sided quantile) and
``tol`` the margin (``--relative-tolerance``, default ``--tolerance``). Against LTH the row also
gives the cost ratio LTH / PMP of ``cost_train_flops``: the same accuracy at several times
the training cost is not the same result.

Cost-matched rows (``comparison`` = "cost-matched"): a PMP group trained for as many epochs as
an LTH chain spent to reach the same target (its nested run's ``cost_epochs``, every cycle from
the dense one on; conf/row/lenets/lth_pmp*_costmatched.yaml) is compared with that LTH group,
everything else shared as above but the epochs. They answer "what if PMP got LTH's budget?";
the other rows are "same epochs" (per cycle for LTH).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from repro import records
from repro.report.aggregate import GROUP_SHORT, ONE_SHOT_NOTE
from repro.report.decide import decide_relative, one_sided_bounds
from repro.report.reading import BASE_KEYS, GROUP_COLUMN
from repro.report.stats import t_interval

RELATIVE_KIND = "claim_relative"
#: the paper's method: the one compared with every other
PAPER_METHOD = "pmp"
#: the method whose cost is set beside PMP's (LTH pays for its rounds)
COSTLY_METHOD = "lth"
#: the ``comparison`` of a row: the same epochs (per cycle), or PMP given LTH's whole budget
SAME_EPOCHS = "same epochs"
COST_MATCHED = "cost-matched"
#: a PMP group is cost-matched to an LTH group when its epochs are within this many of the chain's
#: epochs (``cost_epochs``; rewinding to step k > 0 leaves a chain a fraction of an epoch short per round)
COST_MATCH_EPOCHS = 1.0
RELATIVE_COLUMNS = [
    "id", "kind", "comparison", "model", "dataset", "data_source", "epochs", "width", "target", "method", "other", "recipe",
    "group", "other_group", "n", "seeds", "pmp_mean", "other_mean", "diff_mean", "diff_std", "lower", "upper",
    "tolerance_pp", "test", "verdict", "reason", "seeds_needed", "cost_ratio", "notes",
]


def _partners(groups: pd.DataFrame, pmp: pd.Series, dense_methods: Sequence[str]) -> pd.DataFrame:
    """The other methods' groups that share everything with this PMP group but the method."""
    g = groups[groups["method"] != PAPER_METHOD]
    for k in BASE_KEYS:
        g = g[g[k] == pmp[k]]
    g = g[g["_recipe"] == pmp["_recipe"]]
    return g[g["method"].isin(list(dense_methods)) | ((g["target"] - pmp["target"]).abs() < 1e-9)]


def _cost_matched(groups: pd.DataFrame, pmp: pd.Series) -> pd.DataFrame:
    """The LTH groups at PMP's target and recipe whose chains spent as many epochs as PMP trained."""
    cost = records.column(records.COST_EPOCHS)
    if cost not in groups:
        return groups.iloc[:0]
    g = groups[(groups["method"] == COSTLY_METHOD) & (groups["epochs"] != pmp["epochs"])]
    for k in BASE_KEYS:
        if k != "epochs":
            g = g[g[k] == pmp[k]]
    g = g[(g["_recipe"] == pmp["_recipe"]) & ((g["target"] - pmp["target"]).abs() < 1e-9)]
    return g[(g[cost] - pmp["epochs"]).abs() <= COST_MATCH_EPOCHS]


def _seeds(seeds: Any) -> str:
    return " ".join(str(s) for s in sorted(seeds, key=lambda s: (isinstance(s, str), s)))


def _row(pmp: pd.Series, other: pd.Series, tol: float, confidence: float, costs: Sequence[str],
         comparison: str = SAME_EPOCHS) -> dict[str, Any]:
    """One claim_relative row: PMP's group against one other group, paired by seed."""
    a, b = pmp["_final_by_seed"], other["_final_by_seed"]
    common = sorted(set(a) & set(b), key=str)
    s = t_interval([a[k] - b[k] for k in common], confidence, kind="paired")
    dec = decide_relative(s, tol, confidence)
    lower, upper = one_sided_bounds(s, confidence)
    notes = []
    alone = [f"{m} {_seeds(set(d) - set(common))}" for m, d in ((PAPER_METHOD, a), (other["method"], b))
             if set(d) - set(common)]
    if alone:
        notes.append(f"seeds without a partner left out: {'; '.join(alone)}")
    for who, g in ((PAPER_METHOD, pmp), (other["method"], other)):
        if ONE_SHOT_NOTE in g["notes"]:
            notes.append(f"{who}: {ONE_SHOT_NOTE}")
    cost = records.column(records.COST_TRAIN_FLOPS)
    ratio = np.nan
    if other["method"] == COSTLY_METHOD and cost in costs and np.isfinite(pmp[cost]) and pmp[cost]:
        ratio = other[cost] / pmp[cost]
        notes.append(f"cost: {other['method']} trains {ratio:.2f}× PMP's {cost}")
    target = f"{100 * pmp['target']:g}"
    name = f"pmp_vs_{other['method']}_{pmp['model']}_{pmp['dataset']}_s{target}_e{pmp['epochs']:g}"
    if comparison == COST_MATCHED:
        name += "_costmatched"
        notes.insert(0, f"cost-matched: PMP trained {pmp['epochs']:g} epochs in one cycle, the {other['method']} chain "
                        f"{other[records.column(records.COST_EPOCHS)]:g} epochs ({other['epochs']:g} per cycle) "
                        "to reach this target")
    return {
        "id": name, "kind": RELATIVE_KIND, "comparison": comparison,
        "model": pmp["model"], "dataset": pmp["dataset"], "data_source": pmp["data_source"],
        "epochs": pmp["epochs"], "width": pmp["width"], "target": pmp["target"], "method": PAPER_METHOD,
        "other": other["method"], "recipe": pmp["_recipe"], "group": pmp.get(GROUP_COLUMN, ""),
        "other_group": other.get(GROUP_COLUMN, ""), "n": s.n, "seeds": _seeds(common),
        "pmp_mean": float(np.mean([a[k] for k in common])) if common else np.nan,
        "other_mean": float(np.mean([b[k] for k in common])) if common else np.nan,
        "diff_mean": s.mean, "diff_std": s.std, "lower": lower, "upper": upper, "tolerance_pp": tol,
        "test": dec.test, "verdict": dec.verdict, "reason": dec.reason, "seeds_needed": dec.seeds_needed,
        "cost_ratio": ratio, "notes": notes,
    }


def relative_claims(groups: pd.DataFrame, tolerance: float, confidence: float = 0.95,
                    dense_methods: Sequence[str] = ("dense",), costs: Sequence[str] = ()) -> pd.DataFrame:
    """One claim_relative row per (PMP group, comparable other group); see the module docstring."""
    rows = []
    if not groups.empty and "_recipe" in groups:
        for _, pmp in groups[groups["method"] == PAPER_METHOD].iterrows():
            for _, other in _partners(groups, pmp, dense_methods).iterrows():
                rows.append(_row(pmp, other, tolerance, confidence, costs))
            for _, other in _cost_matched(groups, pmp).iterrows():
                rows.append(_row(pmp, other, tolerance, confidence, costs, COST_MATCHED))
    out = pd.DataFrame(rows, columns=RELATIVE_COLUMNS)
    twins = out.duplicated(subset="id", keep=False)
    for i in out.index[twins]:  # two groups with the same columns (their group tags differ): tell the ids apart
        out.at[i, "id"] += f"_{str(out.at[i, 'group'])[:GROUP_SHORT]}_{str(out.at[i, 'other_group'])[:GROUP_SHORT]}"
    return out


def unmatched(groups: pd.DataFrame, relative: pd.DataFrame) -> list[str]:
    """PMP groups that no other method's group matches (so no relative claim could be made)."""
    if groups.empty:
        return []
    pmp = groups[groups["method"] == PAPER_METHOD]
    seen = set(zip(relative["model"], relative["dataset"], relative["data_source"], relative["epochs"],
                   relative["width"], relative["target"], relative["group"]))
    return [f"{g['model']}/{g['dataset']}/{g['data_source']} at {100 * g['target']:g}% ({g['epochs']:g} epochs)"
            for _, g in pmp.iterrows()
            if (g["model"], g["dataset"], g["data_source"], g["epochs"], g["width"], g["target"],
                g.get(GROUP_COLUMN, "")) not in seen]
