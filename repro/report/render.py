"""Rendering: groups, claims and left-out runs -> table.md, table.csv and claims.csv.

Formatting only: every number has been computed by the modules before, so the markdown and
the CSVs cannot disagree. The provenance header (command, commit, date, machine, tracking)
says where a table came from when it is read away from the machine that wrote it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro import records
from repro.report.aggregate import GROUP_SHORT, lookalikes
from repro.report.reading import GROUP_COLUMN
from repro.report.stats import NAN, NO_RUNS
from repro.tracking import git_info


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
    """The results table; a ``group`` column (short group tag) only where two rows would look alike."""
    show_group = GROUP_COLUMN in groups and bool(lookalikes(groups).any())
    header = ["model", "dataset", "data", "method", "target %", "epochs"] + (["group"] if show_group else [])
    header += ["n", "final acc % (mean ± std)", "95% CI",
              "best acc % (mean ± std)", "sparsity % prunable / all", "Δ vs dense pp [95% CI]"]
    header += [f"{c} (× dense)" for c in costs]
    header += ["references", "commit", "notes"]
    rows = []
    for _, g in groups.iterrows():
        delta = ""
        if np.isfinite(g["delta_mean"]):
            delta = f"{_signed(g['delta_mean'])} {_ci(g['delta_lo'], g['delta_hi'])} ({g['delta_kind']}, n={int(g['delta_n'])})"
        r = [g["model"], g["dataset"], g["data_source"], g["method"], f"{100 * g['target']:g}", f"{g['epochs']:g}"]
        r += [g[GROUP_COLUMN][:GROUP_SHORT]] if show_group else []
        r += [int(g["n"]), _pm(g["final_mean"], g["final_std"]), _ci(g["final_lo"], g["final_hi"]),
             _pm(g["best_mean"], g["best_std"]), f"{_f(g['sparsity_mean'])} / {_f(g['sparsity_all_mean'])}", delta]
        r += [f"{_sci(g[c])} ({_f(g[f'{c}_ratio'])})" if np.isfinite(g[c]) else "" for c in costs]
        r += [g.get("references", ""), g["commits"], "; ".join(g["notes"])]
        rows.append(r)
    return markdown_table(header, rows)


def claims_markdown(claims: pd.DataFrame) -> str:
    """The claims table: one row per reference and matching group, and the overall rows of range claims."""
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
    """Failed and unfinished runs: listed, so that leaving them out of the numbers is visible."""
    rows = [[r["run_name"], r["run_id"][:12], r["reason"], r["method"], r["model"], r["dataset"], f"{100 * r['target']:g}",
             r["seed"], r["failure"]] for _, r in left.iterrows()]
    return markdown_table(["run", "id", "status", "method", "model", "dataset", "target %", "seed", "reason"], rows)


def safe_uri(uri: str) -> str:
    """The URI without credentials: the header is published with the table."""
    return re.sub(r"//[^/@]*@", "//***@", uri)


def provenance(args: argparse.Namespace, uri: str, runs: pd.DataFrame, argv: Sequence[str]) -> dict[str, str]:
    """Where the table came from: command, report commit, date, machine, store and the runs' commits."""
    info = git_info()
    commits = sorted(set(runs["commit"])) if not runs.empty else []
    return {
        "command": shlex.join(["repro-report", *argv]),
        "report commit": f"{info[records.GIT_COMMIT_TAG]} (dirty: {info[records.GIT_DIRTY_TAG]})",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.platform()}, Python {platform.python_version()})",
        "tracking": f"{safe_uri(uri)}, experiment '{args.experiment}', profile '{args.profile or '(all)'}'",
        "run commits": ", ".join(c[:10] for c in commits) + (" — **runs come from different commits**"
                                                             if len(commits) > 1 else ""),
    }


def write_markdown(path: Path, prov: dict[str, str], groups: pd.DataFrame, claims: pd.DataFrame, left: pd.DataFrame,
                   plots: Sequence[Path], costs: Sequence[str], args: argparse.Namespace, n_dupes: int) -> None:
    """table.md: provenance, results, claims with the verdict rule spelled out, left-out runs, plots."""
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


def _drop_empty_group(df: pd.DataFrame) -> pd.DataFrame:
    """Leave out the group column when no run carries a group tag: older stores give the same CSV as before."""
    if GROUP_COLUMN in df and not df[GROUP_COLUMN].fillna("").astype(bool).any():
        return df.drop(columns=GROUP_COLUMN)
    return df


def write_csvs(out: Path, groups: pd.DataFrame, claims: pd.DataFrame) -> list[Path]:
    """table.csv and claims.csv: every column of the groups and claims, notes joined by '; '."""
    table = groups.drop(columns=[c for c in groups.columns if c.startswith("_")], errors="ignore").copy()
    table = _drop_empty_group(table)
    if "notes" in table:
        table["notes"] = table["notes"].map("; ".join)
    claims = _drop_empty_group(claims.copy())
    if "notes" in claims:
        claims["notes"] = claims["notes"].map(lambda n: "; ".join(n) if isinstance(n, list) else "")
    paths = [out / "table.csv", out / "claims.csv"]
    table.to_csv(paths[0], index=False)
    claims.to_csv(paths[1], index=False)
    return paths


