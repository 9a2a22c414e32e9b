"""Aggregation: tidy runs -> one row per group, with its delta and cost ratio to dense, file sizes and latency.

Everything the table says about a group is computed here, once, so that the markdown, the
CSV, the claims and the plots all read the same numbers. Notes collect whatever keeps a
row from being taken at face value (one seed, mixed commits, JPEG data, runs at chance...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from repro import records
from repro.data import SPECS
from repro.report.reading import BASE_KEYS, GROUP_BY, GROUP_COLUMN, GROUP_KEYS, RECIPE_PARAMS
from repro.report.stats import NAN, difference, t_interval

#: classes per dataset, for the chance level (from the dataset registry: a new dataset brings its own)
NUM_CLASSES = {name: spec.num_classes for name, spec in SPECS.items()}
#: how many characters of a group tag the table shows (enough to tell groups apart by eye)
GROUP_SHORT = 8
#: methods whose point is to prune gradually, during training (a mask updated many times)
GRADUAL_METHODS = ("pmp", "gmp")
#: fewer mask updates than this and a gradual method is one-shot pruning in disguise
MIN_MASK_UPDATES = 3
ONE_SHOT_NOTE = f"fewer than {MIN_MASK_UPDATES} mask updates: one-shot pruning in disguise"
#: bytes in a kB of the size columns: 1000, as ``ls --si`` and file managers count
KB = 1000.0
#: the table's size column of the exported file (CSR for pruned weights), in kB
SIZE_KB = "size_sparse_kB"
#: the table's size ratios -> (exported file metric, dense fp32 file metric) of the same run:
#: raw, then both gzip-compressed, then both zstd-compressed (zstd only where it was installed)
SIZE_RATIOS = {
    "size_ratio": (records.column(records.SIZE_SPARSE_BYTES), records.column(records.SIZE_DENSE_BYTES)),
    "size_gzip_ratio": (records.column(records.SIZE_SPARSE_GZIP_BYTES), records.column(records.SIZE_DENSE_GZIP_BYTES)),
    "size_zstd_ratio": (records.column(records.SIZE_SPARSE_ZSTD_BYTES), records.column(records.SIZE_DENSE_ZSTD_BYTES)),
}


#: the latency metrics the table shows, in order (``repro-export --profile NAME --latency --log``);
#: each is the mean over the group's timed runs (the speedups: of the per-run paired ratios)
LATENCY_SHOWN = tuple(records.column(m) for m in (
    records.LATENCY_DENSE_B1_MS, records.LATENCY_SPARSE_B1_MS, records.LATENCY_SPEEDUP_B1,
    records.LATENCY_DENSE_B256_IPS, records.LATENCY_SPARSE_B256_IPS, records.LATENCY_SPEEDUP_B256))


def cost_columns(df: pd.DataFrame) -> list[str]:
    """The cost metrics the runs logged (cost_*), in a stable order."""
    return sorted(c for c in df.columns if c.startswith(records.column(records.COST_PREFIX)))


def size_metrics(df: pd.DataFrame) -> list[str]:
    """The size metrics the runs logged (size_*, see :mod:`repro.export.sizes`), in a stable order.

    Not the table's own size columns (:func:`size_columns`), which share the prefix: the group
    means of these go to table.csv as they are, for whoever wants the bytes themselves.
    """
    derived = {SIZE_KB, *SIZE_RATIOS}
    return sorted(c for c in df.columns if c.startswith(records.column(records.SIZE_PREFIX)) and c not in derived)


def size_columns(df: pd.DataFrame) -> list[str]:
    """The size columns the table shows, in order, for those whose metrics the runs logged.

    A store in which no run exported has none, so its table is the table it was before sizes existed.
    """
    return [c for c in (SIZE_KB, *SIZE_RATIOS) if c in df.columns]


def latency_metrics(df: pd.DataFrame) -> list[str]:
    """The latency metrics the runs logged (latency_*), in a stable order; their group means go to table.csv."""
    return sorted(c for c in df.columns if c.startswith(records.column(records.LATENCY_PREFIX)))


def latency_columns(df: pd.DataFrame) -> list[str]:
    """The latency columns the table shows, for those the runs logged (none in a store never timed)."""
    return [c for c in LATENCY_SHOWN if c in df.columns]


def _sizes(g: pd.DataFrame) -> dict[str, float]:
    """A group's size columns: its mean CSR file in kB, and its mean ratios sparse / dense file.

    Each ratio is taken run by run, both files being written from that run's own weights, and
    then averaged over the runs like any other per-run number. Runs without the metrics (they
    did not export) are NaN and drop out of the means; a group none of whose runs exported is NaN.
    """
    out: dict[str, float] = {}
    if records.column(records.SIZE_SPARSE_BYTES) in g:
        out[SIZE_KB] = g[records.column(records.SIZE_SPARSE_BYTES)].mean() / KB
    for col, (num, den) in SIZE_RATIOS.items():
        if num in g and den in g:
            out[col] = (g[num] / g[den].where(g[den] > 0)).mean()
    return out


def _with_group(df: pd.DataFrame) -> pd.DataFrame:
    """Frames built without the group column (older callers, tests) have an empty group tag."""
    return df if GROUP_COLUMN in df.columns else df.assign(**{GROUP_COLUMN: ""})


def recipe(g: pd.DataFrame) -> str:
    """The group's recipe (optimizer, LR, batch size, validation split) as ``param=value`` text.

    Two methods are compared head to head only where these texts are equal; a group whose
    runs disagree on a value shows every value (``a|b``) and so matches no single-recipe group.
    """
    parts = []
    for col, param in RECIPE_PARAMS.items():
        values = sorted({str(v) for v in g[col]}) if col in g else [""]
        parts.append(f"{param}={'|'.join(values)}")
    return " ".join(parts)


def selection(g: pd.DataFrame) -> str:
    """How the group's best epochs were chosen (:data:`~repro.report.reading.SELECTED_ON_VAL` or
    ``SELECTED_ON_TEST``); runs that disagree give both, joined by ``|``; "" without best epochs."""
    if "best_selection" not in g:
        return ""
    return "|".join(sorted(set(g.loc[g["best_acc"].notna(), "best_selection"].dropna())))


def _notes(row: dict[str, Any], g: pd.DataFrame, final_n: int, commits: list[str], dense_methods: Sequence[str],
           duplicates: pd.DataFrame | None) -> list[str]:
    """Why this group's numbers may not be what they seem."""
    notes = []
    if final_n < 2:
        notes.append("single seed: no interval")
    if len(commits) > 1:
        notes.append(f"runs from {len(commits)} commits")
    if (g["dirty"] == "true").any():
        notes.append("uncommitted changes in some runs")
    if row["dataset"] == "cifar10" and row["data_source"] == "jpeg":
        notes.append("CIFAR-10 read from the JPEG copy, not the official batches")
    if row["method"] not in dense_methods and np.isfinite(row["sparsity_mean"]):
        if abs(row["sparsity_mean"] - 100.0 * row["target"]) > 0.1:
            notes.append(f"measured sparsity {row['sparsity_mean']:.2f}% vs target {100 * row['target']:.2f}%")
    for split in ("train", "test"):
        sizes = sorted({int(v) for v in g.get(f"{split}_subset", pd.Series(dtype=float)).dropna() if v > 0})
        if sizes:
            notes.append(f"{split} subset of {', '.join(map(str, sizes))} images")
    if records.column(records.SIZE_SPARSE_BYTES) in g:
        exported = int(g[records.column(records.SIZE_SPARSE_BYTES)].notna().sum())
        if 0 < exported < len(g):  # the size columns then speak for fewer runs than the accuracy
            notes.append(f"sizes from {exported}/{len(g)} runs: the others did not export")
    if records.column(records.LATENCY_DONE) in g:
        timed = int(g[records.column(records.LATENCY_DONE)].notna().sum())
        if 0 < timed < len(g):
            notes.append(f"latency from {timed}/{len(g)} runs: the others were not timed")
        threads = sorted({int(t) for t in g.get(records.column(records.LATENCY_THREADS), pd.Series(dtype=float)).dropna()})
        if len(threads) > 1:
            notes.append(f"latency timed at {', '.join(map(str, threads))} threads: not comparable run to run")
    if row["method"] in GRADUAL_METHODS and row["mask_updates_mean"] < MIN_MASK_UPDATES:  # NaN (not logged): no note
        notes.append(ONE_SHOT_NOTE)
    collapsed = int((g["layer_collapse"] > 0).sum())
    if collapsed:
        notes.append(f"layer collapse in {collapsed}/{len(g)} runs")
    chance = 100.0 / NUM_CLASSES.get(row["dataset"], 10)
    untrained = int((g["final_acc"] <= chance + 1.0).sum())
    if untrained:
        # e.g. GraSP at 50% on LeNet-300-100 at lr 0.1 without warm-up: large initial logits, dead ReLUs
        notes.append(f"at chance (final acc <= {chance + 1.0:g}%) in {untrained}/{len(g)} runs: the network did not train")
    if duplicates is not None and not duplicates.empty:
        same = _with_group(duplicates)
        for k in GROUP_BY:
            same = same[same[k] == row[k]]
        if len(same):
            notes.append(f"{len(same)} older duplicate run(s) ignored")
    return notes


def summarize(runs: pd.DataFrame, confidence: float = 0.95, dense_methods: Sequence[str] = ("dense",),
              duplicates: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per group: accuracy statistics, measured sparsity, delta to dense, cost, sizes, provenance, notes."""
    if runs.empty:
        return pd.DataFrame(columns=GROUP_BY)
    runs = _with_group(runs)
    costs = cost_columns(runs)
    measured = size_metrics(runs) + latency_metrics(runs)  # their group means, as logged
    rows = []
    for key, g in runs.groupby(GROUP_BY, sort=True, dropna=False):
        row: dict[str, Any] = dict(zip(GROUP_BY, key))
        final = t_interval(g["final_acc"], confidence)
        best = t_interval(g["best_acc"], confidence)
        top = t_interval(g["max_acc"] if "max_acc" in g else pd.Series(dtype=float), confidence)
        seeds = sorted(g["seed"], key=lambda s: (isinstance(s, str), s))
        commits = sorted(set(g["commit"]))
        row.update({
            "n": final.n, "seeds": " ".join(str(s) for s in seeds),
            "final_mean": final.mean, "final_std": final.std, "final_lo": final.lo, "final_hi": final.hi,
            "best_n": best.n, "best_mean": best.mean, "best_std": best.std, "best_lo": best.lo, "best_hi": best.hi,
            "best_selection": selection(g),
            "max_n": top.n, "max_mean": top.mean, "max_std": top.std, "max_lo": top.lo, "max_hi": top.hi,
            "sparsity_mean": g["final_sparsity"].mean() * 100.0, "sparsity_all_mean": g["final_sparsity_all"].mean() * 100.0,
            "sparsity_weights_mean": (g["final_sparsity_weights"].mean() * 100.0 if "final_sparsity_weights" in g
                                      else float("nan")),
            "commits": " ".join(c[:10] for c in commits), "run_ids": " ".join(g["run_id"]),
            "mask_updates_mean": g["mask_updates"].mean() if "mask_updates" in g else NAN,
            "_final_by_seed": dict(zip(g["seed"], g["final_acc"])), "_recipe": recipe(g),
        })
        for c in costs:
            row[c] = g[c].mean()
        for c in measured:
            row[c] = g[c].mean()
        row.update(_sizes(g))
        row["notes"] = _notes(row, g, final.n, commits, dense_methods, duplicates)
        rows.append(row)
    groups = pd.DataFrame(rows)
    _note_lookalikes(groups)
    # methods side by side: same setting and target next to each other, dense first
    groups["_order"] = ~groups["method"].isin(list(dense_methods))
    groups = groups.sort_values([*BASE_KEYS, "target", "_order", "method"], kind="stable").reset_index(drop=True)
    return add_dense_deltas(groups.drop(columns="_order"), confidence, dense_methods, costs)


def lookalikes(groups: pd.DataFrame) -> pd.Series:
    """True for groups that share every visible key with another group (only their group tags differ)."""
    if groups.empty:
        return pd.Series(dtype=bool)
    return groups.duplicated(subset=GROUP_KEYS, keep=False)


def _note_lookalikes(groups: pd.DataFrame) -> None:
    """Say why two rows with the same columns are not merged: their runs differ in unshown settings."""
    for i in groups.index[lookalikes(groups)]:
        tag = groups.at[i, GROUP_COLUMN][:GROUP_SHORT] or "(none)"
        groups.at[i, "notes"] = [*groups.at[i, "notes"], f"run group {tag}: another row has the same columns, "
                                 "its runs differ in settings the table does not show"]


def _dense_for(groups: pd.DataFrame, row: pd.Series, dense_methods: Sequence[str]) -> tuple[pd.Series | None, str]:
    """The dense group a pruned group is compared with, and a note when it is not like for like."""
    dense = groups[groups["method"].isin(list(dense_methods))]
    exact = dense
    for k in BASE_KEYS:
        exact = exact[exact[k] == row[k]]
    if len(exact) > 1:
        short = [str(t)[:GROUP_SHORT] or "(none)" for t in exact.get(GROUP_COLUMN, [""] * len(exact))]
        return exact.iloc[0], f"{len(exact)} dense groups match (run groups {', '.join(short)}): compared with {short[0]}"
    if len(exact):
        return exact.iloc[0], ""
    loose = dense[(dense["model"] == row["model"]) & (dense["dataset"] == row["dataset"])
                  & (dense["data_source"] == row["data_source"])]
    if "_recipe" in loose and (loose["_recipe"] == row.get("_recipe")).any():
        loose = loose[loose["_recipe"] == row.get("_recipe")]  # another length, but the same recipe first
    if len(loose):
        d = loose.iloc[0]
        return d, f"dense baseline trained {d['epochs']:g} epochs at width {d['width']:g}"
    return None, ""


def add_dense_deltas(groups: pd.DataFrame, confidence: float, dense_methods: Sequence[str],
                     costs: Sequence[str]) -> pd.DataFrame:
    """Delta to the matching dense group (paired by seed where possible) and cost ratios to it."""
    cols: dict[str, list] = {k: [] for k in ("delta_mean", "delta_std", "delta_lo", "delta_hi", "delta_n",
                                             "delta_kind")}
    ratios: dict[str, list] = {f"{c}_ratio": [] for c in costs}
    for i, row in groups.iterrows():
        base, note = (None, "") if row["method"] in dense_methods else _dense_for(groups, row, dense_methods)
        if base is None:
            for k in cols:
                cols[k].append(NAN if k != "delta_kind" else "")
            for c in costs:
                # a dense row is one dense training cycle by definition
                ratios[f"{c}_ratio"].append(1.0 if row["method"] in dense_methods and np.isfinite(row[c]) else NAN)
            continue
        d = difference(row["_final_by_seed"], base["_final_by_seed"], confidence)
        cols["delta_mean"].append(d.mean)
        cols["delta_std"].append(d.std)  # paired: std of the differences; unpaired: Welch standard error
        cols["delta_lo"].append(d.lo)
        cols["delta_hi"].append(d.hi)
        cols["delta_n"].append(d.n)
        cols["delta_kind"].append(d.kind)
        for c in costs:
            den = base[c]
            ratios[f"{c}_ratio"].append(row[c] / den if np.isfinite(den) and den else NAN)
        if note:
            groups.at[i, "notes"] = [*row["notes"], note]
    for k, v in {**cols, **ratios}.items():
        groups[k] = v
    return groups
