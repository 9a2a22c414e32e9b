"""Claims: the paper's and the literature's numbers (conf/references.csv) beside our groups.

A reference is matched to groups by model, dataset, method and sparsity, then judged by
the rules of :mod:`repro.report.decide` (at least 3 seeds; the t-interval against
``x +- tol`` for "at least x" and "equal to x"; an equivalence test for "within d pp of
dense"), which also say why and how many seeds would decide an inconclusive verdict.
Whatever keeps a reference and a group from comparing like for like (epochs,
architecture, metric, denominator, data) becomes a note next to the verdict instead of
being hidden in it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from repro.report.aggregate import GROUP_SHORT, lookalikes
from repro.report.decide import Decision, decide_equivalence, decide_interval
from repro.report.reading import GROUP_COLUMN, SELECTED_ON_TEST
from repro.report.stats import NAN, NO_RUNS, Stats, combine
from repro.tracking import PROJECT_ROOT

DEFAULT_REFERENCES = PROJECT_ROOT / "conf" / "references.csv"
#: a reference sparsity matches a run's target within this many (fractional) points
SPARSITY_MATCH = 0.005
#: reference metrics that mean "best epoch": compared with our best-epoch accuracy
BEST_METRICS = ("best_epoch", "best_checkpoint")
#: the reference metric "max test accuracy over the kept checkpoints" (SNIP): compared with our
#: ``max_test_acc`` where the runs have it (logged, or derived from their history), else best epoch
MAX_METRIC = "best_checkpoint"
REF_COLUMNS = ["id", "kind", "source", "citation", "method", "model", "our_model", "same_arch", "dataset", "sparsity",
               "sparsity_max", "sparsity_denominator", "accuracy", "metric", "epochs", "direction", "tolerance_pp",
               "verified", "verification_note", "like_for_like_note",
               # appended (fixtures build rows by position): LTH's "weights" denominator, a recipe filter
               "denominator", "recipe"]


def load_references(path: Path | None) -> pd.DataFrame:
    """The references CSV with every column present and typed (empty when there is no file)."""
    if path is None or not Path(path).is_file():
        return pd.DataFrame(columns=REF_COLUMNS)
    refs = pd.read_csv(path, dtype={"id": str})
    for c in REF_COLUMNS:
        if c not in refs.columns:
            refs[c] = NAN
    for c in ("sparsity", "sparsity_max", "accuracy", "epochs", "tolerance_pp"):
        refs[c] = pd.to_numeric(refs[c], errors="coerce")
    for c in ("kind", "method", "our_model", "dataset", "metric", "direction", "sparsity_denominator", "denominator",
              "same_arch", "recipe"):
        refs[c] = refs[c].fillna("").astype(str).str.strip()
    refs["kind"] = refs["kind"].replace("", "literature")
    refs["direction"] = refs["direction"].replace("", "two_sided")
    return refs


def under_recipe(ref: pd.Series, groups: pd.DataFrame) -> pd.Series:
    """Which groups ran under the reference's recipe: a reference measured under one (e.g.
    "optim.name=sgd") speaks only about runs under it; one with no recipe about every run."""
    wanted = ref["recipe"].split()
    if not wanted or "_recipe" not in groups or groups.empty:
        return pd.Series(True, index=groups.index)
    return groups["_recipe"].map(lambda have: all(w in str(have).split() for w in wanted)).astype(bool)


def _matches(ref: pd.Series, groups: pd.DataFrame) -> pd.DataFrame:
    """The groups a reference speaks about: same model, dataset and method, sparsity in its range."""
    if groups.empty:
        return groups
    g = groups[(groups["model"] == ref["our_model"]) & (groups["dataset"] == ref["dataset"])
               & (groups["method"] == ref["method"])]
    g = g[under_recipe(ref, g)]
    lo, hi = ref["sparsity"], ref["sparsity_max"]
    if np.isfinite(lo):
        hi = hi if np.isfinite(hi) else lo
        at = g["target"]
        if ref["denominator"] == "weights" and "sparsity_weights_mean" in g:
            # LTH counts every conv and linear weight, pruned or not: match on what runs measured over
            # those (a run that keeps shortcuts dense has a higher target over its prunable set)
            measured = g["sparsity_weights_mean"] / 100.0
            at = measured.where(measured.notna(), at)
        g = g[(at >= lo - SPARSITY_MATCH) & (at <= hi + SPARSITY_MATCH)]
    return g


def like_for_like(ref: pd.Series, group: pd.Series, used: str) -> list[str]:
    """Why a reference number and our group may not compare like for like."""
    notes = []
    arch = ref["same_arch"]
    if arch and not arch.lower().startswith("yes"):
        notes.append(f"architecture: {arch}")
    if np.isfinite(ref["epochs"]):
        if group["epochs"] != ref["epochs"]:
            notes.append(f"epochs: reference {ref['epochs']:g}, ours {group['epochs']:g}")
    else:
        notes.append(f"reference epochs undisclosed (ours {group['epochs']:g})")
    if used == "max":
        notes.append("both max test accuracy over kept checkpoints (test-selected)")
    elif ref["metric"] in BEST_METRICS:
        notes.append("both best epoch" if used == "best" else "reference best epoch vs our final epoch")
        if used == "best" and SELECTED_ON_TEST in str(group.get("best_selection", "")):
            notes.append("our best epoch chosen on the test set (test-selected)")
    elif ref["metric"] != "final":
        notes.append("reference final/best unknown; ours final epoch")
    den = ref["sparsity_denominator"]
    if ref["denominator"] == "weights" and "sparsity_weights_mean" in group and np.isfinite(group["sparsity_weights_mean"]):
        notes.append(f"reference sparsity over every conv and linear weight; ours {group['sparsity_weights_mean']:.2f}% "
                     "over those")
    elif den == "all":
        notes.append(f"reference sparsity over all parameters; ours {group['sparsity_all_mean']:.2f}% over all")
    elif den not in ("prunable", ""):
        notes.append(f"reference sparsity denominator {den}; ours over prunable weights "
                     f"({group['sparsity_all_mean']:.2f}% over all)")
    if group["dataset"] == "cifar10" and group["data_source"] == "jpeg":
        notes.append("our CIFAR-10 is the JPEG copy, not the official batches")
    if group["width"] != 1.0:
        notes.append(f"our width multiplier {group['width']:g} (paper: 1)")
    if ref["kind"] != "claim_delta_vs_dense" and np.isfinite(ref["sparsity"]) and ref["denominator"] != "weights":
        if abs(group["target"] - ref["sparsity"]) > 1e-9:
            notes.append(f"target {100 * group['target']:.2f}% vs reference {100 * ref['sparsity']:.2f}%")
    elif not np.isfinite(ref["sparsity"]):
        notes.append("reference sparsity unknown: matched at every target")
    notes += [n for n in group["notes"] if "subset" in n]
    extra = ref.get("like_for_like_note")
    if isinstance(extra, str) and extra:
        notes.append(extra)
    return notes


def _ours(ref: pd.Series, g: pd.Series) -> tuple[str, Stats, list[str]]:
    """(metric used, our statistics, notes on them) for one reference and one matching group.

    The metric follows the reference's: max over checkpoints (``max``, test-selected) for
    ``best_checkpoint`` where our runs have it, best epoch (``best``) for a best-epoch reference,
    else the final epoch; :func:`selection` says how the number used was chosen."""
    if ref["kind"] == "claim_delta_vs_dense":
        s = Stats(int(g["delta_n"]) if np.isfinite(g["delta_n"]) else 0, g["delta_mean"], g.get("delta_std", NAN),
                  g["delta_lo"], g["delta_hi"], g["delta_kind"] or "none")
        extra = [] if g["delta_kind"] else ["no dense run to compare with"]
        if g["delta_kind"] == "unpaired":
            extra.append("no shared seeds with dense: unpaired (Welch) interval")
        return "final", s, extra
    if ref["metric"] == MAX_METRIC and g.get("max_n", 0) > 0:
        used = "max"
    elif ref["metric"] in BEST_METRICS and g["best_n"] > 0:
        used = "best"
    else:
        used = "final"
    s = Stats(int(g[f"{used}_n"] if used != "final" else g["n"]), g[f"{used}_mean"], g[f"{used}_std"],
              g[f"{used}_lo"], g[f"{used}_hi"])
    return used, s, []


def selection(used: str, g: pd.Series) -> str:
    """How the number compared was chosen: "" for the final epoch (nothing chosen), the test set for
    the max over checkpoints, the group's ``best_selection`` for the best epoch."""
    if used == "max":
        return SELECTED_ON_TEST
    return str(g.get("best_selection", "")) if used == "best" else ""


def decide(ref: pd.Series, s: Stats, tol: float, confidence: float = 0.95) -> Decision:
    """The rule for this reference: equivalence (TOST) for "within d of dense", else the interval rule."""
    if ref["kind"] == "claim_delta_vs_dense" and ref["direction"] == "two_sided":
        return decide_equivalence(s, ref["accuracy"], tol, confidence)
    return decide_interval(s, ref["accuracy"], tol, ref["direction"], confidence)


def compare(refs: pd.DataFrame, groups: pd.DataFrame, tolerance: float = 0.5, confidence: float = 0.95) -> pd.DataFrame:
    """One row per (reference, matching group), plus an overall row per range claim; verdicts included."""
    rows = []
    twins = lookalikes(groups)
    for _, ref in refs.iterrows():
        tol = ref["tolerance_pp"] if np.isfinite(ref["tolerance_pp"]) else tolerance
        base = {"id": ref["id"], "kind": ref["kind"], "source": ref["source"], "method": ref["method"],
                "model": ref["our_model"], "dataset": ref["dataset"], "ref_sparsity": ref["sparsity"],
                "ref_sparsity_max": ref["sparsity_max"], "reference": ref["accuracy"], "ref_metric": ref["metric"],
                "direction": ref["direction"], "tolerance_pp": tol, "verified": ref["verified"],
                "verification_note": ref["verification_note"], "citation": ref["citation"]}
        matched = _matches(ref, groups)
        if matched.empty:
            rows.append({**base, "verdict": NO_RUNS, "notes": ["no finished runs match this reference"]})
            continue
        verdicts = []
        for idx, g in matched.iterrows():
            row = {**base, "data_source": g["data_source"], "target": g["target"], "epochs": g["epochs"],
                   "width": g["width"], GROUP_COLUMN: g.get(GROUP_COLUMN, "")}
            used, s, extra = _ours(ref, g)
            dec = decide(ref, s, tol, confidence)
            v = dec.verdict
            if twins.get(idx, False):
                extra.append(f"run group {row[GROUP_COLUMN][:GROUP_SHORT] or '(none)'} of several with the same "
                             "columns: their runs differ in settings the table does not show")
            verdicts.append(v)
            row.update({"metric_used": used, "best_selection": selection(used, g),
                        "n": s.n, "ours": s.mean, "ours_lo": s.lo, "ours_hi": s.hi,
                        "pairing": s.kind, "delta_pp": s.mean - ref["accuracy"], "test": dec.test, "verdict": v,
                        "reason": dec.reason, "seeds_needed": dec.seeds_needed,
                        "notes": extra + like_for_like(ref, g, used)})
            rows.append(row)
        if ref["kind"] == "claim_delta_vs_dense":
            rows.append({**base, "target": NAN, "n": len(verdicts), "verdict": combine(verdicts),
                         "notes": [f"overall over {len(verdicts)} target(s) in range: all must be reproduced"],
                         "metric_used": "final", "scope": "overall"})
    out = pd.DataFrame(rows)
    for c in ("scope", "test", "reason", "seeds_needed", "best_selection"):
        out[c] = out[c].fillna("") if c in out.columns else ""
    return out


def _ref_value(claim: pd.Series) -> str:
    if claim["kind"] == "claim_delta_vs_dense":
        return f"Δ vs dense {claim['reference']:+g} ± {claim['tolerance_pp']:g}"
    return f"{claim['reference']:g}"


def references_for(groups: pd.DataFrame, claims: pd.DataFrame) -> list[str]:
    """For each group, the reference values it was compared with ('id value (verdict)')."""
    out = []
    for _, g in groups.iterrows():
        if claims.empty or "target" not in claims:
            out.append("")
            continue
        c = claims[(claims["model"] == g["model"]) & (claims["dataset"] == g["dataset"]) & (claims["method"] == g["method"])
                   & (claims["data_source"] == g["data_source"]) & (claims["target"] == g["target"])
                   & (claims["epochs"] == g["epochs"]) & (claims["width"] == g["width"])]
        if GROUP_COLUMN in c and GROUP_COLUMN in g:
            c = c[c[GROUP_COLUMN] == g[GROUP_COLUMN]]
        out.append("; ".join(f"{r['id']} {_ref_value(r)} ({r['verdict']})" for _, r in c.iterrows()))
    return out
