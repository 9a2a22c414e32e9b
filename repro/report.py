"""``repro-report``: MLflow runs -> a table and plots beside the paper's and the literature's numbers.

    repro-report --profile quick                 # results/quick/: table.md, table.csv, claims.csv, *.png
    repro-report --profile paper --tolerance 0.5 --no-log

Reads only MLflow (the runs of one experiment whose ``profile`` tag matches, or that a later
sweep of the profile reused: tag ``repro.profile.<name>``) and
``conf/references.csv``. Runs are grouped by model, dataset, data source, method, target
sparsity (param ``sparsity``; 0 for dense), epochs and width; seeds are aggregated (mean,
sample std, n, Student-t interval). Failed or unfinished runs are left out of the numbers
and listed under the table. The same files are logged to MLflow as a run tagged
``kind=report`` (which later reports skip).

Verdict rule (stated in table.md): with ``ref`` the reference value, ``tol`` its tolerance
and ``[lo, hi]`` the t-interval of our mean (or of the paired difference to dense),
``at_least`` claims are *reproduced* when ``lo >= ref - tol``, *not reproduced* when
``hi < ref - tol``; ``two_sided`` claims are *reproduced* when ``[lo, hi]`` lies inside
``ref +- tol``, *not reproduced* when it lies wholly outside; everything else, and any
group with fewer than two seeds, is *inconclusive*.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import os
import platform
import re
import shlex
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.tracking import PROJECT_ROOT, git_info, profile_tag, resolve_uri

log = logging.getLogger("repro.report")

DEFAULT_REFERENCES = PROJECT_ROOT / "conf" / "references.csv"
#: what one row of the table aggregates over (seeds vary inside a group)
GROUP_KEYS = ["model", "dataset", "data_source", "method", "target", "epochs", "width"]
#: what a dense baseline must share with a pruned group
BASE_KEYS = ["model", "dataset", "data_source", "epochs", "width"]
#: a reference sparsity matches a run's target within this many (fractional) points
SPARSITY_MATCH = 0.005
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NO_RUNS = "reproduced", "not reproduced", "inconclusive", "no runs"
BEST_METRICS = ("best_epoch", "best_checkpoint")
REPORT_TAG = "kind"
PLOT_PREFIXES = ("acc_vs_sparsity_", "layer_density_", "training_curve_")


# ----------------------------------------------------------------------------- statistics


@dataclass
class Stats:
    """Mean, sample std, count and a two-sided Student-t interval of the mean."""

    n: int
    mean: float
    std: float
    lo: float
    hi: float
    kind: str = "runs"  # runs | paired | unpaired


NAN = float("nan")


def t_quantile(confidence: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf((1.0 + confidence) / 2.0, df))


def t_interval(values: Iterable[float], confidence: float = 0.95, kind: str = "runs") -> Stats:
    """Student-t interval of the mean of the finite values (no interval below two values)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Stats(0, NAN, NAN, NAN, NAN, kind)
    mean = float(x.mean())
    if n < 2:
        return Stats(1, mean, NAN, NAN, NAN, kind)
    std = float(x.std(ddof=1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half, kind)


def welch_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Stats:
    """Interval of mean(a) - mean(b) for independent samples (Welch-Satterthwaite df)."""
    a = np.asarray([v for v in a if np.isfinite(v)], dtype=float)
    b = np.asarray([v for v in b if np.isfinite(v)], dtype=float)
    if len(a) == 0 or len(b) == 0:
        return Stats(0, NAN, NAN, NAN, NAN, "unpaired")
    diff = float(a.mean() - b.mean())
    n = min(len(a), len(b))
    if len(a) < 2 or len(b) < 2:
        return Stats(n, diff, NAN, NAN, NAN, "unpaired")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Stats(n, diff, 0.0, diff, diff, "unpaired")
    df = se**4 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(confidence, df) * se
    return Stats(n, diff, se, diff - half, diff + half, "unpaired")


def difference(ours: dict[Any, float], base: dict[Any, float], confidence: float = 0.95) -> Stats:
    """ours - base: paired by seed where at least two seeds are shared, else Welch."""
    common = sorted(set(ours) & set(base), key=str)
    if len(common) >= 2:
        return t_interval([ours[s] - base[s] for s in common], confidence, kind="paired")
    return welch_interval(list(ours.values()), list(base.values()), confidence)


def verdict(lo: float, hi: float, ref: float, tol: float, direction: str = "two_sided") -> str:
    """reproduced / not reproduced / inconclusive for an interval against ref +- tol."""
    if not (np.isfinite(lo) and np.isfinite(hi) and np.isfinite(ref)):
        return INCONCLUSIVE
    if direction == "at_least":
        if lo >= ref - tol:
            return REPRODUCED
        if hi < ref - tol:
            return NOT_REPRODUCED
        return INCONCLUSIVE
    if direction != "two_sided":
        raise ValueError(f"direction '{direction}': use at_least or two_sided")
    if ref - tol <= lo and hi <= ref + tol:
        return REPRODUCED
    if hi < ref - tol or lo > ref + tol:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim over several groups: all reproduced, any not, else inconclusive."""
    if not verdicts:
        return NO_RUNS
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return INCONCLUSIVE


# ----------------------------------------------------------------------------- reading MLflow


def fetch_runs(uri: str, experiment: str, profile: str | None) -> pd.DataFrame:
    """All active runs of the experiment (of this profile) as mlflow.search_runs gives them."""
    import mlflow
    from mlflow.entities import ViewType

    mlflow.set_tracking_uri(uri)
    exp = mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame()

    def search(filt: str = "") -> pd.DataFrame:
        return mlflow.search_runs([exp.experiment_id], filter_string=filt, run_view_type=ViewType.ACTIVE_ONLY,
                                  output_format="pandas")

    if profile:
        # the run's own profile, or a profile that reused it (a FINISHED run skipped by a later sweep);
        # MLflow filters have no OR, so two server-side searches
        quoted = profile.replace("\\", "\\\\").replace("'", "\\'")
        found = [f for f in (search(f"tags.profile = '{quoted}'"), search(f"tags.`{profile_tag(profile)}` = '1'"))
                 if not f.empty]
        df = pd.concat(found, ignore_index=True).drop_duplicates("run_id") if found else pd.DataFrame()
    else:
        df = search()
    col = f"tags.{REPORT_TAG}"
    if col in df.columns:
        df = df[~df[col].fillna("").isin(["report", "chain"])]  # report runs; LTH chains (their targets are nested runs)
    return df.reset_index(drop=True)


def _col(raw: pd.DataFrame, *names: str) -> pd.Series:
    """The first of the columns present, filled from the next ones where missing."""
    out = pd.Series([None] * len(raw), index=raw.index, dtype=object)
    for name in names:
        if name in raw.columns:
            out = out.where(out.notna(), raw[name])
    return out


def _num(raw: pd.DataFrame, *names: str) -> pd.Series:
    return pd.to_numeric(_col(raw, *names), errors="coerce").astype(float)


def tidy(raw: pd.DataFrame, dense_methods: Sequence[str] = ("dense",)) -> pd.DataFrame:
    """One row per run with the columns the report uses (accuracies in %, sparsities as fractions)."""
    if raw.empty:
        return pd.DataFrame(columns=["run_id", *GROUP_KEYS, "seed", "status"])
    df = pd.DataFrame({
        "run_id": raw["run_id"],
        "run_name": _col(raw, "tags.mlflow.runName").fillna(""),
        "status": raw["status"],
        "start_time": pd.to_datetime(raw["start_time"]) if "start_time" in raw else pd.NaT,
        "model": _col(raw, "tags.model", "params.model.name").fillna("unknown"),
        "dataset": _col(raw, "tags.dataset", "params.data.name").fillna("unknown"),
        "data_source": _col(raw, "tags.data_source").fillna("unknown"),
        "method": _col(raw, "tags.method", "params.pruner.name").fillna("unknown"),
        "sparsity_param": _num(raw, "params.sparsity"),
        "seed": _col(raw, "params.seed").fillna(raw["run_id"]),
        "epochs": _num(raw, "params.trainer.epochs"),
        "width": _num(raw, "params.model.width").fillna(1.0),
        "commit": _col(raw, "tags.git_commit").fillna("unknown"),
        "dirty": _col(raw, "tags.git_dirty").fillna("unknown"),
        "failure": _col(raw, "tags.repro.failure").fillna(""),
        "final_acc": _num(raw, "metrics.final_test_acc") * 100.0,
        "best_acc": _num(raw, "metrics.best_test_acc") * 100.0,
        "final_sparsity": _num(raw, "metrics.final_sparsity"),
        "final_sparsity_all": _num(raw, "metrics.final_sparsity_all"),
        "layer_collapse": _num(raw, "metrics.layer_collapse"),
        "train_subset": _num(raw, "params.data.train_subset"),
        "test_subset": _num(raw, "params.data.test_subset"),
    })
    for c in raw.columns:
        if c.startswith("metrics.cost_"):
            df[c[len("metrics."):]] = pd.to_numeric(raw[c], errors="coerce")
    dense = df["method"].isin(list(dense_methods))
    df["target"] = np.where(dense, 0.0, df["sparsity_param"].fillna(0.0)).round(6)
    df["seed"] = df["seed"].map(lambda s: int(s) if isinstance(s, str) and re.fullmatch(r"-?\d+", s) else s)
    return df


def split_runs(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(complete runs, left-out runs with a reason, superseded duplicates)."""
    done = (df["status"] == "FINISHED") & df["final_acc"].notna()
    left = df[~done].copy()
    left["reason"] = np.where(left["status"] == "FINISHED", "FINISHED without final_test_acc", left["status"])
    ok = df[done].sort_values("start_time", ascending=False, kind="stable")
    dup = ok.duplicated(subset=[*GROUP_KEYS, "seed"], keep="first")
    return ok[~dup].reset_index(drop=True), left.reset_index(drop=True), ok[dup].reset_index(drop=True)


# ----------------------------------------------------------------------------- aggregation


def cost_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if c.startswith("cost_"))


#: classes per dataset, for the chance level
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}


def summarize(runs: pd.DataFrame, confidence: float = 0.95, dense_methods: Sequence[str] = ("dense",),
              duplicates: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per group: accuracy statistics, measured sparsity, delta to dense, cost, provenance, notes."""
    if runs.empty:
        return pd.DataFrame(columns=GROUP_KEYS)
    costs = cost_columns(runs)
    rows = []
    for key, g in runs.groupby(GROUP_KEYS, sort=True, dropna=False):
        row: dict[str, Any] = dict(zip(GROUP_KEYS, key))
        final = t_interval(g["final_acc"], confidence)
        best = t_interval(g["best_acc"], confidence)
        seeds = sorted(g["seed"], key=lambda s: (isinstance(s, str), s))
        commits = sorted(set(g["commit"]))
        row.update({
            "n": final.n, "seeds": " ".join(str(s) for s in seeds),
            "final_mean": final.mean, "final_std": final.std, "final_lo": final.lo, "final_hi": final.hi,
            "best_n": best.n, "best_mean": best.mean, "best_std": best.std, "best_lo": best.lo, "best_hi": best.hi,
            "sparsity_mean": g["final_sparsity"].mean() * 100.0, "sparsity_all_mean": g["final_sparsity_all"].mean() * 100.0,
            "commits": " ".join(c[:10] for c in commits), "run_ids": " ".join(g["run_id"]),
            "_final_by_seed": dict(zip(g["seed"], g["final_acc"])),
        })
        for c in costs:
            row[c] = g[c].mean()
        notes = []
        if final.n < 2:
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
        collapsed = int((g["layer_collapse"] > 0).sum())
        if collapsed:
            notes.append(f"layer collapse in {collapsed}/{len(g)} runs")
        chance = 100.0 / NUM_CLASSES.get(row["dataset"], 10)
        untrained = int((g["final_acc"] <= chance + 1.0).sum())
        if untrained:
            # e.g. GraSP at 50% on LeNet-300-100 at lr 0.1 without warm-up: large initial logits, dead ReLUs
            notes.append(f"at chance (final acc <= {chance + 1.0:g}%) in {untrained}/{len(g)} runs: the network did not train")
        if duplicates is not None and not duplicates.empty:
            same = duplicates
            for k in GROUP_KEYS:
                same = same[same[k] == row[k]]
            if len(same):
                notes.append(f"{len(same)} older duplicate run(s) ignored")
        row["notes"] = notes
        rows.append(row)
    groups = pd.DataFrame(rows)
    # methods side by side: same setting and target next to each other, dense first
    groups["_order"] = ~groups["method"].isin(list(dense_methods))
    groups = groups.sort_values([*BASE_KEYS, "target", "_order", "method"], kind="stable").reset_index(drop=True)
    return add_dense_deltas(groups.drop(columns="_order"), confidence, dense_methods, costs)


def _dense_for(groups: pd.DataFrame, row: pd.Series, dense_methods: Sequence[str]) -> tuple[pd.Series | None, str]:
    dense = groups[groups["method"].isin(list(dense_methods))]
    exact = dense
    for k in BASE_KEYS:
        exact = exact[exact[k] == row[k]]
    if len(exact):
        return exact.iloc[0], ""
    loose = dense[(dense["model"] == row["model"]) & (dense["dataset"] == row["dataset"])
                  & (dense["data_source"] == row["data_source"])]
    if len(loose):
        d = loose.iloc[0]
        return d, f"dense baseline trained {d['epochs']:g} epochs at width {d['width']:g}"
    return None, ""


def add_dense_deltas(groups: pd.DataFrame, confidence: float, dense_methods: Sequence[str],
                     costs: Sequence[str]) -> pd.DataFrame:
    """Delta to the matching dense group (paired by seed where possible) and cost ratios to it."""
    cols: dict[str, list] = {k: [] for k in ("delta_mean", "delta_lo", "delta_hi", "delta_n", "delta_kind")}
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


# ----------------------------------------------------------------------------- references


REF_COLUMNS = ["id", "kind", "source", "citation", "method", "model", "our_model", "same_arch", "dataset", "sparsity",
               "sparsity_max", "sparsity_denominator", "accuracy", "metric", "epochs", "direction", "tolerance_pp",
               "verified", "verification_note", "like_for_like_note"]


def load_references(path: Path | None) -> pd.DataFrame:
    if path is None or not Path(path).is_file():
        return pd.DataFrame(columns=REF_COLUMNS)
    refs = pd.read_csv(path, dtype={"id": str})
    for c in REF_COLUMNS:
        if c not in refs.columns:
            refs[c] = NAN
    for c in ("sparsity", "sparsity_max", "accuracy", "epochs", "tolerance_pp"):
        refs[c] = pd.to_numeric(refs[c], errors="coerce")
    for c in ("kind", "method", "our_model", "dataset", "metric", "direction", "sparsity_denominator", "same_arch"):
        refs[c] = refs[c].fillna("").astype(str).str.strip()
    refs["kind"] = refs["kind"].replace("", "literature")
    refs["direction"] = refs["direction"].replace("", "two_sided")
    return refs


def _matches(ref: pd.Series, groups: pd.DataFrame) -> pd.DataFrame:
    if groups.empty:
        return groups
    g = groups[(groups["model"] == ref["our_model"]) & (groups["dataset"] == ref["dataset"])
               & (groups["method"] == ref["method"])]
    lo, hi = ref["sparsity"], ref["sparsity_max"]
    if np.isfinite(lo):
        hi = hi if np.isfinite(hi) else lo
        g = g[(g["target"] >= lo - SPARSITY_MATCH) & (g["target"] <= hi + SPARSITY_MATCH)]
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
    if ref["metric"] in BEST_METRICS:
        notes.append("both best epoch" if used == "best" else "reference best epoch vs our final epoch")
    elif ref["metric"] != "final":
        notes.append("reference final/best unknown; ours final epoch")
    den = ref["sparsity_denominator"]
    if den == "all":
        notes.append(f"reference sparsity over all parameters; ours {group['sparsity_all_mean']:.2f}% over all")
    elif den not in ("prunable", ""):
        notes.append(f"reference sparsity denominator {den}; ours over prunable weights "
                     f"({group['sparsity_all_mean']:.2f}% over all)")
    if group["dataset"] == "cifar10" and group["data_source"] == "jpeg":
        notes.append("our CIFAR-10 is the JPEG copy, not the official batches")
    if group["width"] != 1.0:
        notes.append(f"our width multiplier {group['width']:g} (paper: 1)")
    if ref["kind"] != "claim_delta_vs_dense" and np.isfinite(ref["sparsity"]):
        if abs(group["target"] - ref["sparsity"]) > 1e-9:
            notes.append(f"target {100 * group['target']:.2f}% vs reference {100 * ref['sparsity']:.2f}%")
    elif not np.isfinite(ref["sparsity"]):
        notes.append("reference sparsity unknown: matched at every target")
    notes += [n for n in group["notes"] if "subset" in n]
    extra = ref.get("like_for_like_note")
    if isinstance(extra, str) and extra:
        notes.append(extra)
    return notes


def compare(refs: pd.DataFrame, groups: pd.DataFrame, tolerance: float = 0.5) -> pd.DataFrame:
    """One row per (reference, matching group), plus an overall row per range claim; verdicts included."""
    rows = []
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
        for _, g in matched.iterrows():
            row = {**base, "data_source": g["data_source"], "target": g["target"], "epochs": g["epochs"],
                   "width": g["width"]}
            if ref["kind"] == "claim_delta_vs_dense":
                used = "final"
                s = Stats(int(g["delta_n"]) if np.isfinite(g["delta_n"]) else 0, g["delta_mean"], NAN,
                          g["delta_lo"], g["delta_hi"], g["delta_kind"] or "none")
                extra = [] if g["delta_kind"] else ["no dense run to compare with"]
                if g["delta_kind"] == "unpaired":
                    extra.append("no shared seeds with dense: unpaired (Welch) interval")
            else:
                use_best = ref["metric"] in BEST_METRICS and g["best_n"] > 0
                used = "best" if use_best else "final"
                s = Stats(int(g[f"{used}_n"] if used == "best" else g["n"]), g[f"{used}_mean"], g[f"{used}_std"],
                          g[f"{used}_lo"], g[f"{used}_hi"])
                extra = []
            v = verdict(s.lo, s.hi, ref["accuracy"], tol, ref["direction"])
            if s.n < 2:
                extra.append("fewer than two seeds: no interval")
            verdicts.append(v)
            row.update({"metric_used": used, "n": s.n, "ours": s.mean, "ours_lo": s.lo, "ours_hi": s.hi,
                        "pairing": s.kind, "delta_pp": s.mean - ref["accuracy"], "verdict": v,
                        "notes": extra + like_for_like(ref, g, used)})
            rows.append(row)
        if ref["kind"] == "claim_delta_vs_dense":
            rows.append({**base, "target": NAN, "n": len(verdicts), "verdict": combine(verdicts),
                         "notes": [f"overall over {len(verdicts)} target(s) in range: all must be reproduced"],
                         "metric_used": "final", "scope": "overall"})
    out = pd.DataFrame(rows)
    if "scope" not in out.columns:
        out["scope"] = ""
    out["scope"] = out["scope"].fillna("")
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
        out.append("; ".join(f"{r['id']} {_ref_value(r)} ({r['verdict']})" for _, r in c.iterrows()))
    return out


# ----------------------------------------------------------------------------- plots


def _xs(s: Any) -> Any:
    """Sparsity -> -log10(1 - s): spreads 90%, 99%, 99.9% evenly."""
    return -np.log10(1.0 - np.clip(np.asarray(s, dtype=float), 0.0, 0.9999))


X_TICKS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999]


def _colors(methods: Iterable[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(sorted(set(methods)))}


def _slug(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(f"{p:g}" if isinstance(p, float) else str(p) for p in parts))


def plot_accuracy(groups: pd.DataFrame, refs: pd.DataFrame, out: Path, dense_methods: Sequence[str]) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    colors = _colors(list(groups["method"]) + list(refs.get("method", [])))
    for key, g in groups.groupby(BASE_KEYS, sort=True):
        model, dataset, source, epochs, width = key
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method, m in g.groupby("method", sort=True):
            m = m.sort_values("target")
            if method in dense_methods:
                mean, std = m["final_mean"].iloc[0], m["final_std"].iloc[0]
                ax.axhline(mean, color="black", ls="--", lw=1, label=f"{method} (n={m['n'].iloc[0]})")
                if np.isfinite(std):
                    ax.axhspan(mean - std, mean + std, color="black", alpha=0.08)
                continue
            ax.errorbar(_xs(m["target"]), m["final_mean"], yerr=m["final_std"].fillna(0.0), marker="o", ms=4,
                        capsize=3, color=colors[method], label=f"{method} (n={int(m['n'].max())})")
        r = refs[(refs["our_model"] == model) & (refs["dataset"] == dataset) & refs["sparsity"].notna()
                 & (refs["kind"] != "claim_delta_vs_dense")] if not refs.empty else refs
        for _, ref in r.iterrows():
            x = _xs(ref["sparsity"])
            ax.scatter([x], [ref["accuracy"]], marker="*", s=120, color=colors.get(ref["method"], "grey"),
                       edgecolor="black", zorder=5)
            ax.annotate(ref["id"], (x, ref["accuracy"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        top = max([0.9, float(g["target"].max()), *(r["sparsity"] if len(r) else [])])
        ticks = [t for t in X_TICKS if t <= top + 1e-9]
        ax.set_xticks(_xs(ticks), [f"{100 * t:g}" for t in ticks])
        ax.set_xlabel("sparsity of prunable weights (%; log scale of weights remaining)")
        ax.set_ylabel("final test accuracy (%)")
        ax.set_title(f"{model} on {dataset} ({source}), {epochs:g} epochs, width {width:g}\n"
                     "mean ± std over seeds; stars: references", fontsize=9)
        paths.append(_save(fig, ax, out / f"acc_vs_sparsity_{_slug(model, dataset, source, f'e{epochs:g}', f'w{width:g}')}.png"))
    return paths


def _save(fig: Any, ax: Any, path: Path) -> Path:
    """Grid, legend, tight layout, write the PNG, free the figure."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _download_density(client: Any, run_id: str, tmp: Path) -> pd.DataFrame | None:
    try:
        local = client.download_artifacts(run_id, "layer_density.csv", str(tmp))
        return pd.read_csv(local)
    except Exception as exc:  # noqa: BLE001 - a missing artifact only drops one line of a plot
        log.warning("no layer_density.csv for run %s: %s", run_id, exc)
        return None


def plot_layer_density(groups: pd.DataFrame, runs: pd.DataFrame, client: Any, out: Path,
                       dense_methods: Sequence[str]) -> list[Path]:
    """Per-layer density of the final masks, one line per method, at the target most methods share."""
    import matplotlib.pyplot as plt

    paths = []
    pruned = groups[~groups["method"].isin(list(dense_methods))]
    colors = _colors(groups["method"])
    with tempfile.TemporaryDirectory() as tmp:
        for key, g in pruned.groupby(BASE_KEYS, sort=True):
            model, dataset, source, epochs, width = key
            counts = g.groupby("target")["method"].nunique()
            target = max(counts.index, key=lambda t: (counts[t], t))
            fig, ax = plt.subplots(figsize=(8, 4.5))
            drawn = 0
            for _, grow in g[g["target"] == target].sort_values("method").iterrows():
                r = runs.loc[runs["run_id"].isin(grow["run_ids"].split())]
                r = r.sort_values("seed", key=lambda s: s.map(str))
                first = r.iloc[0]
                dens = _download_density(client, first["run_id"], Path(tmp) / first["run_id"])
                if dens is None or dens.empty:
                    continue
                ax.plot(range(len(dens)), dens["density"], marker="o", ms=3, color=colors[grow["method"]],
                        label=f"{grow['method']} (seed {first['seed']})")
                labels = list(dens["layer"])
                drawn += 1
            if not drawn:
                plt.close(fig)
                continue
            ax.set_xticks(range(len(labels)), labels, rotation=70 if len(labels) > 8 else 0, fontsize=6)
            ax.set_ylabel("density of the final mask (kept / weights)")
            ax.set_yscale("log")
            ax.set_title(f"{model} on {dataset} ({source}) at {100 * target:g}% sparsity, {epochs:g} epochs", fontsize=9)
            slug = _slug(model, dataset, source, f"s{target:g}", f"e{epochs:g}", f"w{width:g}")
            paths.append(_save(fig, ax, out / f"layer_density_{slug}.png"))
    return paths


def pick_curve_run(runs: pd.DataFrame, dense_methods: Sequence[str], method: str = "pmp") -> pd.Series | None:
    """The PMP run (else the first pruned method's) with the highest target, lowest seed."""
    pool = runs[runs["method"] == method]
    if pool.empty:
        pool = runs[~runs["method"].isin(list(dense_methods))]
        if pool.empty:
            return None
        pool = pool[pool["method"] == sorted(pool["method"])[0]]
    pool = pool.assign(_seed=pool["seed"].map(str)).sort_values(["target", "_seed"], ascending=[False, True])
    return pool.iloc[0]


def plot_curve(run: pd.Series, client: Any, out: Path) -> Path | None:
    """Test accuracy and sparsity over training for one run (metric histories)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    acc = sorted((m.step, m.value) for m in client.get_metric_history(run["run_id"], "test_acc"))
    sp = sorted((m.step, m.value) for m in client.get_metric_history(run["run_id"], "sparsity"))
    if not acc and not sp:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if acc:
        ax.plot([s for s, _ in acc], [100 * v for _, v in acc], marker="o", ms=3, color="tab:blue")
    ax.set_xlabel("epoch (logged step)")
    ax.set_ylabel("test accuracy (%)", color="tab:blue")
    ax2 = ax.twinx()
    if sp:
        ax2.plot([s for s, _ in sp], [100 * v for _, v in sp], ls="--", marker=".", color="tab:red")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_ylabel("sparsity of prunable weights (%)", color="tab:red")
    ax2.set_ylim(0, 100)
    ax.set_title(f"{run['run_name'] or run['run_id']}: {run['model']} on {run['dataset']} ({run['data_source']})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    target, seed = run["target"], run["seed"]
    path = out / f"training_curve_{_slug(run['method'], run['model'], run['dataset'], f's{target:g}', f'seed{seed}')}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- writing


def _f(x: Any, digits: int = 2) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x) if x is not None else ""
    return "" if not np.isfinite(x) else f"{x:.{digits}f}"


def _pm(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return ""
    return f"{mean:.2f} ± {std:.2f}" if np.isfinite(std) else f"{mean:.2f}"


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else "–"


def _signed(x: float) -> str:
    return f"{round(x, 2) + 0.0:+.2f}" if np.isfinite(x) else ""  # + 0.0: no "-0.00"


def _sci(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else ""


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def groups_markdown(groups: pd.DataFrame, costs: Sequence[str]) -> str:
    header = ["model", "dataset", "data", "method", "target %", "epochs", "n", "final acc % (mean ± std)", "95% CI",
              "best acc % (mean ± std)", "sparsity % prunable / all", "Δ vs dense pp [95% CI]"]
    header += [f"{c} (× dense)" for c in costs]
    header += ["references", "commit", "notes"]
    rows = []
    for _, g in groups.iterrows():
        delta = ""
        if np.isfinite(g["delta_mean"]):
            delta = f"{_signed(g['delta_mean'])} {_ci(g['delta_lo'], g['delta_hi'])} ({g['delta_kind']}, n={int(g['delta_n'])})"
        r = [g["model"], g["dataset"], g["data_source"], g["method"], f"{100 * g['target']:g}", f"{g['epochs']:g}",
             int(g["n"]), _pm(g["final_mean"], g["final_std"]), _ci(g["final_lo"], g["final_hi"]),
             _pm(g["best_mean"], g["best_std"]), f"{_f(g['sparsity_mean'])} / {_f(g['sparsity_all_mean'])}", delta]
        r += [f"{_sci(g[c])} ({_f(g[f'{c}_ratio'])})" if np.isfinite(g[c]) else "" for c in costs]
        r += [g.get("references", ""), g["commits"], "; ".join(g["notes"])]
        rows.append(r)
    return markdown_table(header, rows)


def claims_markdown(claims: pd.DataFrame) -> str:
    header = ["id", "source", "method", "model", "data", "ref sparsity %", "our target %", "epochs", "reference",
              "ours (metric, n)", "95% CI", "Δ pp", "tol pp", "test", "verdict", "verified", "notes"]
    rows = []
    for _, c in claims.iterrows():
        ref_s = _f(100 * c["ref_sparsity"], 2) if np.isfinite(c["ref_sparsity"]) else "?"
        if np.isfinite(c.get("ref_sparsity_max", NAN)):
            ref_s += f"–{100 * c['ref_sparsity_max']:.2f}"
        is_delta = c["kind"] == "claim_delta_vs_dense"
        reference = f"Δ vs dense {c['reference']:+g}" if is_delta else f"{c['reference']:.2f} ({c['ref_metric'] or '?'})"
        if c.get("scope") == "overall" or c["verdict"] == NO_RUNS:
            ours = f"{int(c['n'])} target(s)" if c.get("scope") == "overall" else ""
            rows.append([c["id"], c["source"], c["method"], c["model"], "", ref_s, "", "", reference, ours, "", "",
                         _f(c["tolerance_pp"]), c["direction"], f"**{c['verdict']}**", c["verified"], "; ".join(c["notes"])])
            continue
        ours = f"{_f(c['ours'])} ({'Δ vs dense, ' + c['pairing'] if is_delta else c['metric_used']}, n={int(c['n'])})"
        rows.append([c["id"], c["source"], c["method"], c["model"], c["data_source"], ref_s, f"{100 * c['target']:g}",
                     f"{c['epochs']:g}", reference, ours, _ci(c["ours_lo"], c["ours_hi"]), _signed(c["delta_pp"]),
                     _f(c["tolerance_pp"]), c["direction"], f"**{c['verdict']}**", c["verified"], "; ".join(c["notes"])])
    return markdown_table(header, rows)


def left_out_markdown(left: pd.DataFrame) -> str:
    rows = [[r["run_name"], r["run_id"][:12], r["reason"], r["method"], r["model"], r["dataset"], f"{100 * r['target']:g}",
             r["seed"], r["failure"]] for _, r in left.iterrows()]
    return markdown_table(["run", "id", "status", "method", "model", "dataset", "target %", "seed", "reason"], rows)


def _safe_uri(uri: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", uri)


def provenance(args: argparse.Namespace, uri: str, runs: pd.DataFrame, argv: Sequence[str]) -> dict[str, str]:
    info = git_info()
    commits = sorted(set(runs["commit"])) if not runs.empty else []
    return {
        "command": shlex.join(["repro-report", *argv]),
        "report commit": f"{info['git_commit']} (dirty: {info['git_dirty']})",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.platform()}, Python {platform.python_version()})",
        "tracking": f"{_safe_uri(uri)}, experiment '{args.experiment}', profile '{args.profile or '(all)'}'",
        "run commits": ", ".join(c[:10] for c in commits) + (" — **runs come from different commits**"
                                                             if len(commits) > 1 else ""),
    }


def write_markdown(path: Path, prov: dict[str, str], groups: pd.DataFrame, claims: pd.DataFrame, left: pd.DataFrame,
                   plots: Sequence[Path], costs: Sequence[str], args: argparse.Namespace, n_dupes: int) -> None:
    parts = [f"# Reproduction report: profile `{args.profile or '(all)'}`", ""]
    parts += [f"- **{k}**: {v}" for k, v in prov.items()]
    if not groups.empty:
        epochs = ", ".join(f"{e:g}" for e in sorted(groups["epochs"].dropna().unique()))
        sources = ", ".join(sorted(set(groups["data_source"])))
        parts += [f"- **epochs used** (trainer.epochs): {epochs}", f"- **data sources**: {sources}"]
    parts += ["", "## Results", "",
              "Accuracies are test accuracy in %, over seeds: mean ± sample std, and the 95% Student-t interval of the "
              f"mean (confidence {args.confidence:g}). *final* is the last epoch (the headline); *best* is the best "
              "epoch on the final mask. Sparsity is measured at the end, over prunable weights / over all parameters. "
              "Δ vs dense is paired by seed where at least two seeds are shared (else Welch, unpaired)."
              + (" Cost columns show the mean and, in brackets, the ratio to the matching dense run (one dense "
                 "training cycle)." if costs else ""), ""]
    parts.append(groups_markdown(groups, costs) if not groups.empty else "_No finished runs._")
    parts += ["", "## Claims and literature numbers", "",
              f"Tolerance: {args.tolerance:g} pp unless the reference row sets its own (`tolerance_pp`). Verdict: "
              "`at_least` — reproduced if the lower CI bound ≥ reference − tol, not reproduced if the upper bound < "
              "reference − tol; `two_sided` — reproduced if the CI lies inside reference ± tol, not reproduced if it "
              "lies wholly outside; otherwise, or with fewer than two seeds, inconclusive. The metric compared is our "
              "best-epoch accuracy when the reference reports a best epoch, else our final accuracy. Delta claims "
              "compare with our own dense runs. Rows whose notes are not empty do not compare like for like.", ""]
    if claims.empty:
        parts.append("_No references loaded._")
    else:
        matched = claims[claims["verdict"] != NO_RUNS]
        parts.append(claims_markdown(matched) if not matched.empty else "_No run matches any reference._")
        missing = claims.loc[claims["verdict"] == NO_RUNS, "id"]
        if len(missing):
            parts += ["", "References without matching finished runs (model, dataset, method and sparsity): "
                      + ", ".join(f"`{i}`" for i in missing) + "."]
    parts += ["", "## Left out of the numbers", ""]
    if left.empty:
        parts.append("None: every run of this profile finished.")
    else:
        parts += [f"{len(left)} failed or unfinished run(s):", "", left_out_markdown(left)]
    if n_dupes:
        parts += ["", f"{n_dupes} older duplicate run(s) of the same configuration and seed were ignored "
                      "(the newest finished run counts)."]
    parts += ["", "## Plots", ""]
    parts += [f"![{p.stem}]({p.name})" for p in plots] or ["_No plots._"]
    path.write_text("\n".join(parts) + "\n")


def write_csvs(out: Path, groups: pd.DataFrame, claims: pd.DataFrame) -> list[Path]:
    table = groups.drop(columns=[c for c in groups.columns if c.startswith("_")], errors="ignore").copy()
    if "notes" in table:
        table["notes"] = table["notes"].map("; ".join)
    claims = claims.copy()
    if "notes" in claims:
        claims["notes"] = claims["notes"].map(lambda n: "; ".join(n) if isinstance(n, list) else "")
    paths = [out / "table.csv", out / "claims.csv"]
    table.to_csv(paths[0], index=False)
    claims.to_csv(paths[1], index=False)
    return paths


def log_report_run(uri: str, experiment: str, profile: str | None, files: Sequence[Path], params: dict[str, Any],
                   claims: pd.DataFrame) -> str | None:
    """Log the report's files as an MLflow run tagged kind=report (later reports skip it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    tags = {REPORT_TAG: "report", "profile": profile or "(all)", **git_info()}
    run = client.create_run(exp.experiment_id, run_name=f"report-{profile or 'all'}", tags=tags)
    try:
        for k, v in params.items():
            client.log_param(run.info.run_id, k, str(v))
        if not claims.empty:
            counts = claims["verdict"].value_counts()
            for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NO_RUNS):
                client.log_metric(run.info.run_id, f"claims_{v.replace(' ', '_')}", float(counts.get(v, 0)))
        for f in files:
            client.log_artifact(run.info.run_id, str(f))
    except Exception:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repro-report", description="MLflow runs -> results/<profile>/: a table beside "
                                "the paper's and the literature's numbers, plots, and a report run in MLflow.")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="repro", help="MLflow experiment (default: repro)")
    p.add_argument("--profile", default=None, help="only runs with this `profile` tag (default: all runs)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: results/<profile>)")
    p.add_argument("--references", type=Path, default=DEFAULT_REFERENCES, help="references CSV")
    p.add_argument("--tolerance", type=float, default=0.5, help="tolerance in accuracy points (default 0.5)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the t-intervals (default 0.95)")
    p.add_argument("--dense-method", action="append", default=None,
                   help="method name(s) of the dense baseline (default: dense); repeatable")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-log", action="store_true", help="do not log the report as an MLflow run")
    return p


@dataclass
class Report:
    out: Path
    groups: pd.DataFrame
    claims: pd.DataFrame
    left_out: pd.DataFrame
    files: list[Path]
    report_run_id: str | None


def make_report(argv: Sequence[str] | None = None) -> Report:
    """Everything ``repro-report`` does; returns what it wrote (tests call this)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not 0.0 < args.confidence < 1.0:
        raise SystemExit("error: --confidence must lie in (0, 1), e.g. 0.95")
    dense_methods = tuple(args.dense_method or ("dense",))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_uri(args.tracking_uri)
    raw = fetch_runs(uri, args.experiment, args.profile)
    if raw.empty:
        raise SystemExit(f"error: no runs with profile '{args.profile}' in experiment '{args.experiment}' at "
                         f"{_safe_uri(uri)}: run the sweep first, or check --profile/--tracking-uri")
    everything = tidy(raw, dense_methods)
    runs, left, dupes = split_runs(everything)
    out = args.out or Path("results") / (args.profile or "all")
    out.mkdir(parents=True, exist_ok=True)
    for prefix in PLOT_PREFIXES:  # stale plots of an earlier report would otherwise be logged again
        for old in out.glob(f"{prefix}*.png"):
            old.unlink()

    groups = summarize(runs, args.confidence, dense_methods, dupes)
    costs = cost_columns(runs)
    refs = load_references(args.references)
    claims = compare(refs, groups, args.tolerance) if not refs.empty else pd.DataFrame()
    if not groups.empty:
        groups["references"] = references_for(groups, claims)

    plots: list[Path] = []
    if not args.no_plots and not groups.empty:
        import matplotlib

        matplotlib.use("Agg")
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        plots += plot_accuracy(groups, refs, out, dense_methods)
        plots += plot_layer_density(groups, runs, client, out, dense_methods)
        run = pick_curve_run(runs, dense_methods)
        if run is not None:
            curve = plot_curve(run, client, out)
            if curve is not None:
                plots.append(curve)

    prov = provenance(args, uri, runs, argv)
    files = write_csvs(out, groups, claims)
    md = out / "table.md"
    write_markdown(md, prov, groups, claims, left, plots, costs, args, len(dupes))
    files = [md, *files, *plots]
    run_id = None
    if not args.no_log:
        params = {"profile": args.profile or "(all)", "experiment": args.experiment, "tolerance_pp": args.tolerance,
                  "confidence": args.confidence, "runs_used": len(runs), "runs_left_out": len(left),
                  "references": str(args.references)}
        run_id = log_report_run(uri, args.experiment, args.profile, files, params, claims)
    return Report(out, groups, claims, left, files, run_id)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("REPRO_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    report = make_report(argv)
    n_claims = 0 if report.claims.empty else int((report.claims["verdict"] != NO_RUNS).sum())
    print(f"wrote {report.out / 'table.md'} ({len(report.groups)} group(s), {n_claims} reference comparison(s), "
          f"{len(report.left_out)} run(s) left out, {len(report.files) - 3} plot(s))"
          + (f"; logged as MLflow run {report.report_run_id}" if report.report_run_id else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
