"""Rendering: groups, claims, relative claims and left-out runs -> table.md and the CSVs.

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
from repro.report import pivot
from repro.report.aggregate import GROUP_SHORT, KB, SIZE_KB, latency_columns, lookalikes, size_columns
from repro.report.decide import MAX_SEEDS, MIN_SEEDS, NO_NUMBER
from repro.report.reading import GROUP_COLUMN, SELECTED_ON_TEST
from repro.report.relative import COST_MATCHED, RELATIVE_COLUMNS, unmatched
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


#: the header of each size column in table.md: its name and, in brackets, what the ratio is to
#: (as the cost columns say "× dense"); the kB column is the exported file itself
SIZE_HEADERS = {
    SIZE_KB: SIZE_KB,
    "size_ratio": "size_ratio (× dense file)",
    "size_gzip_ratio": "size_gzip_ratio (× dense gzip)",
    "size_zstd_ratio": "size_zstd_ratio (× dense zstd)",
}


def _size_cell(column: str, x: float) -> str:
    """kB to one decimal; ratios to three, since at 98% sparsity they are a few hundredths."""
    return _f(x, 1 if column == SIZE_KB else 3)


def size_note(sizes: Sequence[str]) -> str:
    """What the size columns of table.md mean ("" when it has none, so older tables read as before)."""
    if not sizes:
        return ""
    meaning = {SIZE_KB: f"{SIZE_KB} is the exported file in kB ({KB:g} bytes)",
               "size_ratio": "size_ratio is sparse / dense bytes of the same run",
               "size_gzip_ratio": "size_gzip_ratio the same with both files gzip-compressed (level 6)",
               "size_zstd_ratio": "size_zstd_ratio with both zstd-compressed (level 3)"}
    return (" Size columns (runs with `trainer.export=true`): bytes of the exported safetensors file (torch.save "
            "where safetensors is not installed), CSR for pruned weights; ratio to the dense fp32 file. "
            + "; ".join(meaning[c] for c in sizes) + ". Each is the mean over the group's runs that exported; "
            "blank: none did (older runs, LTH's per-target runs).")


#: the latency cells of table.md: header -> (metrics shown in the cell, digits); two metrics read "dense / sparse"
_col = records.column  # the report's column of a metric
LATENCY_CELLS = {
    "b1 ms dense / sparse": ((_col(records.LATENCY_DENSE_B1_MS), _col(records.LATENCY_SPARSE_B1_MS)), 3),
    "speedup b1 (× dense)": ((_col(records.LATENCY_SPEEDUP_B1),), 2),
    "b256 images/s dense / sparse": ((_col(records.LATENCY_DENSE_B256_IPS), _col(records.LATENCY_SPARSE_B256_IPS)), 0),
    "speedup b256 (× dense)": ((_col(records.LATENCY_SPEEDUP_B256),), 2),
}


def latency_headers(groups: pd.DataFrame) -> list[str]:
    """The latency columns of table.md, for those whose metrics the runs logged (none: the table is as before)."""
    shown = set(latency_columns(groups))
    return [h for h, (metrics, _) in LATENCY_CELLS.items() if shown.issuperset(metrics)]


def _latency_cell(header: str, g: pd.Series) -> str:
    metrics, digits = LATENCY_CELLS[header]
    values = [float(g[m]) for m in metrics]
    if not all(np.isfinite(v) for v in values):
        return ""
    return " / ".join(f"{v:.{digits}f}" for v in values)


def latency_note(groups: pd.DataFrame) -> str:
    """What the latency columns of table.md mean ("" when it has none)."""
    if not latency_headers(groups):
        return ""
    threads = sorted({int(t) for t in groups.get(records.column(records.LATENCY_THREADS), pd.Series(dtype=float)).dropna()})
    return (" Latency columns (runs timed after the sweep by `repro-export --profile P --latency --log`, one run after "
            "another in one process, on the CPU): the forward pass at batch 1 in ms and the throughput at batch 256 in "
            "images/s, of the dense network against the same weights multiplied as CSR (`torch.sparse`; convolutions "
            "through unfold); speedup is the median over interleaved rounds of the per-round ratio dense / sparse "
            "time (> 1: the sparse kernels are faster); a dense run's CSR model keeps every weight, so its figure is "
            "the sparse kernels' overhead alone. Each is the mean over the group's timed runs; "
            f"torch threads: {', '.join(map(str, threads)) or '?'}; the machine is each run's "
            f"`{records.LATENCY_MACHINE_TAG}` tag. Blank: not timed.")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def groups_markdown(groups: pd.DataFrame, costs: Sequence[str]) -> str:
    """The results table; a ``group`` column (short group tag) only where two rows would look alike,
    size columns beside the cost columns only where runs exported (see :func:`size_note`), and
    latency columns after them only where runs were timed (see :func:`latency_note`)."""
    show_group = GROUP_COLUMN in groups and bool(lookalikes(groups).any())
    header = ["model", "dataset", "data", "method", "target %", "epochs"] + (["group"] if show_group else [])
    header += ["n", "final acc % (mean ± std)", "95% CI",
              "best acc % (mean ± std)", "best chosen on", "sparsity % prunable / all", "Δ vs dense pp [95% CI]"]
    header += [f"{c} (× dense)" for c in costs]
    sizes = size_columns(groups)
    header += [SIZE_HEADERS[c] for c in sizes]
    latency = latency_headers(groups)
    header += latency
    header += ["references", "commit", "notes"]
    rows = []
    for _, g in groups.iterrows():
        delta = ""
        if np.isfinite(g["delta_mean"]):
            delta = f"{_signed(g['delta_mean'])} {_ci(g['delta_lo'], g['delta_hi'])} ({g['delta_kind']}, n={int(g['delta_n'])})"
        r = [g["model"], g["dataset"], g["data_source"], g["method"], f"{100 * g['target']:g}", f"{g['epochs']:g}"]
        r += [g[GROUP_COLUMN][:GROUP_SHORT]] if show_group else []
        r += [int(g["n"]), _pm(g["final_mean"], g["final_std"]), _ci(g["final_lo"], g["final_hi"]),
             _pm(g["best_mean"], g["best_std"]), g.get("best_selection", ""),
              f"{_f(g['sparsity_mean'])} / {_f(g['sparsity_all_mean'])}", delta]
        r += [f"{_sci(g[c])} ({_f(g[f'{c}_ratio'])})" if np.isfinite(g[c]) else "" for c in costs]
        r += [_size_cell(c, g[c]) for c in sizes]
        r += [_latency_cell(h, g) for h in latency]
        r += [g.get("references", ""), g["commits"], "; ".join(g["notes"])]
        rows.append(r)
    return markdown_table(header, rows)


def claims_markdown(claims: pd.DataFrame) -> str:
    """The claims table: one row per reference and matching group, and the overall rows of range claims."""
    header = ["id", "source", "method", "model", "data", "ref sparsity %", "our target %", "epochs", "reference",
              "ours (metric, n)", "95% CI", "Δ pp", "tol pp", "test", "verdict", "why", "seeds needed", "verified",
              "notes"]
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
                         _f(c["tolerance_pp"]), c["direction"], f"**{c['verdict']}**", "", "", c["verified"],
                         "; ".join(c["notes"])])
            continue
        used = c["metric_used"] + (", test-selected" if c.get("best_selection") == SELECTED_ON_TEST else "")
        ours = f"{_f(c['ours'])} ({'Δ vs dense, ' + c['pairing'] if is_delta else used}, n={int(c['n'])})"
        rows.append([c["id"], c["source"], c["method"], c["model"], c["data_source"], ref_s, f"{100 * c['target']:g}",
                     f"{c['epochs']:g}", reference, ours, _ci(c["ours_lo"], c["ours_hi"]), _signed(c["delta_pp"]),
                     _f(c["tolerance_pp"]), f"{c['direction']}: {c.get('test', '')}", f"**{c['verdict']}**",
                     c.get("reason", ""), c.get("seeds_needed", ""), c["verified"], "; ".join(c["notes"])])
    return markdown_table(header, rows)


def relative_markdown(relative: pd.DataFrame) -> str:
    """The claim_relative table: PMP minus each other method, paired by seed, one row per pair of groups."""
    header = ["model", "data", "epochs", "target %", "PMP vs", "n pairs", "PMP %", "other %", "PMP − other pp (± std)",
              "one-sided bounds", "margin pp", "verdict", "why", "seeds needed", "cost × PMP", "notes"]
    rows = []
    for _, r in relative.iterrows():
        rows.append([r["model"], f"{r['dataset']}/{r['data_source']}", f"{r['epochs']:g}", f"{100 * r['target']:g}",
                     r["other"] + (f" ({r['comparison']})" if r.get("comparison") == COST_MATCHED else ""),
                     int(r["n"]), _f(r["pmp_mean"]), _f(r["other_mean"]), _pm(r["diff_mean"], r["diff_std"]),
                     _ci(r["lower"], r["upper"]), _f(r["tolerance_pp"]), f"**{r['verdict']}**", r["reason"],
                     r["seeds_needed"], _f(r["cost_ratio"]), "; ".join(r["notes"])])
    return markdown_table(header, rows)


def paper_table_markdown(groups: pd.DataFrame, refs: pd.DataFrame, dense_methods: Sequence[str]) -> str:
    """The paper-style pivot of :mod:`repro.report.pivot`: one table per block, footnotes under it."""
    if groups.empty:
        return "_No finished runs._"
    parts: list[str] = []
    for heading, header, rows, notes in pivot.blocks(groups, refs, dense_methods):
        parts += [f"### {heading}", "", markdown_table(header, rows)]
        parts += ["", *[f"- {n}" for n in notes]] if notes else []
        parts.append("")
    return "\n".join(parts).rstrip("\n")


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


CLAIMS_RULE = (
    "Tolerance: {tol:g} pp unless the reference row sets its own (`tolerance_pp`). Every verdict needs at least "
    "{min_n} seeds (fewer: inconclusive, \"n=<n> < {min_n} seeds\"). `at_least` x — reproduced if the lower "
    "bound of the {conf:.0%} t-interval of our mean ≥ x − tol, not reproduced if its upper bound < x − tol; "
    "`two_sided` x — reproduced if the interval lies inside x ± tol, not reproduced if it lies wholly outside. "
    "\"Within d pp of dense\" claims (`claim_delta_vs_dense`, two_sided) are an equivalence test (TOST) on the "
    "seed-paired differences to our dense runs: reproduced if the {inner:.0%} t-interval lies inside (x − d, x + d), "
    "not reproduced if the {conf:.0%} interval lies wholly outside (unpaired differences: inconclusive). Anything "
    "else is inconclusive; *seeds needed* is then the smallest n (≥ {min_n}) whose t-interval half-width, at the "
    "observed std and t with n − 1 degrees of freedom, would put the interval clear of the nearest boundary at the "
    "observed mean (`{no_number}` when the mean sits on a boundary or more than {max_n} would be needed). The metric "
    "compared is our best-epoch accuracy when the reference reports a best epoch, our highest test accuracy over "
    "the epochs on the final mask (`max`) when it reports the max over kept checkpoints, else our final accuracy; "
    "a best epoch is chosen on the validation split where the runs have one, else on the test set, and a number "
    "chosen on the test set is marked *test-selected* (it flatters the method: the test set picked it). Rows "
    "whose notes are not empty do not compare like for like."
)

RELATIVE_RULE = (
    "PMP against every other method of ours (`claim_relative`: \"PMP at least as accurate as X\"), where the groups "
    "share model, dataset, data source, epochs (per round for LTH: its nested target runs at the same sparsity), "
    "width, target sparsity (dense: any) and recipe (`optim.name`, `optim.lr`, `trainer.batch_size`, "
    "`data.val_size`). Runs are paired by seed; for the paired differences PMP − X (mean m, std s, n pairs) the "
    "one-sided {conf:.0%} bounds are m ∓ t(n − 1) · s / √n with t the one-sided {conf:.0%} quantile (two-sided "
    "{inner:.0%}). Verdict with margin {tol:g} pp: reproduced if the lower bound > −{tol:g}, not reproduced if the "
    "upper bound < −{tol:g}, else (and with fewer than {min_n} pairs) inconclusive; seeds needed as above, at the "
    "one-sided level. Against LTH, *cost × PMP* is LTH's `cost_train_flops` over PMP's. A row marked "
    "*(cost-matched)* compares LTH with PMP trained, in one cycle, as many epochs as the LTH chain spent in all its "
    "cycles to reach that sparsity (LTH's `cost_epochs`), the epochs column then being PMP's."
)


def write_markdown(path: Path, prov: dict[str, str], groups: pd.DataFrame, claims: pd.DataFrame, left: pd.DataFrame,
                   plots: Sequence[Path], costs: Sequence[str], args: argparse.Namespace, n_dupes: int,
                   relative: pd.DataFrame | None = None, refs: pd.DataFrame | None = None,
                   dense_methods: Sequence[str] = ("dense",)) -> None:
    """table.md: provenance, the paper-style table, results per group, claims and relative claims with the
    verdict rules spelled out, left-out runs, plots."""
    inner = max(0.0, 2 * args.confidence - 1)
    rule = {"conf": args.confidence, "inner": inner, "min_n": MIN_SEEDS, "max_n": MAX_SEEDS,
            "no_number": NO_NUMBER}
    parts = [f"# Reproduction report: profile `{args.profile or '(all)'}`", ""]
    parts += [f"- **{k}**: {v}" for k, v in prov.items()]
    if not groups.empty:
        epochs = ", ".join(f"{e:g}" for e in sorted(groups["epochs"].dropna().unique()))
        sources = ", ".join(sorted(set(groups["data_source"])))
        parts += [f"- **epochs used** (trainer.epochs): {epochs}", f"- **data sources**: {sources}"]
    parts += ["", "## The table", "",
              "Final test accuracy in %, mean ± sample std (n seeds), per method and target sparsity; one table per "
              "model, dataset, data source and epochs. Starred numbers (\\*) are the paper's or the literature's, "
              "from `conf/references.csv`: the footnote under each table names the reference.", ""]
    parts.append(paper_table_markdown(groups, refs if refs is not None else pd.DataFrame(), dense_methods))
    parts += ["", "## Results per group", "",
              "Accuracies are test accuracy in %, over seeds: mean ± sample std, and the 95% Student-t interval of the "
              f"mean (confidence {args.confidence:g}). *final* is the last epoch (the headline); *best* is the best "
              "epoch on the final mask, chosen as *best chosen on* says: on the validation split, or on the test set "
              "itself (*test (test-selected)*: optimistic, the test set picked the epoch). "
              "Sparsity is measured at the end, over prunable weights / over all parameters. "
              "Δ vs dense is paired by seed where at least two seeds are shared (else Welch, unpaired)."
              + (" Cost columns show the mean and, in brackets, the ratio to the matching dense run (one dense "
                 "training cycle)." if costs else "") + size_note(size_columns(groups)) + latency_note(groups), ""]
    parts.append(groups_markdown(groups, costs) if not groups.empty else "_No finished runs._")
    parts += ["", "## Claims and literature numbers", "", CLAIMS_RULE.format(tol=args.tolerance, **rule), ""]
    if claims.empty:
        parts.append("_No references loaded._")
    else:
        matched = claims[claims["verdict"] != NO_RUNS]
        parts.append(claims_markdown(matched) if not matched.empty else "_No run matches any reference._")
        missing = claims.loc[claims["verdict"] == NO_RUNS, "id"]
        if len(missing):
            parts += ["", "References without matching finished runs (model, dataset, method and sparsity): "
                      + ", ".join(f"`{i}`" for i in missing) + "."]
    relative = relative if relative is not None else pd.DataFrame(columns=RELATIVE_COLUMNS)
    tol = getattr(args, "relative_tolerance", None)
    tol = args.tolerance if tol is None else tol
    parts += ["", "## PMP against the others, paired by seed", "", RELATIVE_RULE.format(tol=tol, **rule), ""]
    parts.append(relative_markdown(relative) if not relative.empty else "_No PMP group has another method's group "
                                                                        "with the same setting and recipe._")
    alone = unmatched(groups, relative)
    if alone:
        parts += ["", "PMP groups without another method under the same setting and recipe: " + "; ".join(alone) + "."]
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


def write_csvs(out: Path, groups: pd.DataFrame, claims: pd.DataFrame,
               relative: pd.DataFrame | None = None) -> list[Path]:
    """table.csv, claims.csv and relative.csv: every column of the groups and claims, notes joined by '; '."""
    table = groups.drop(columns=[c for c in groups.columns if c.startswith("_")], errors="ignore").copy()
    table = _drop_empty_group(table)
    if "notes" in table:
        table["notes"] = table["notes"].map("; ".join)
    claims = _drop_empty_group(claims.copy())
    if "notes" in claims:
        claims["notes"] = claims["notes"].map(lambda n: "; ".join(n) if isinstance(n, list) else "")
    paths = [out / "table.csv", out / "claims.csv", out / "relative.csv"]
    table.to_csv(paths[0], index=False)
    claims.to_csv(paths[1], index=False)
    rel = (relative if relative is not None else pd.DataFrame(columns=RELATIVE_COLUMNS)).copy()
    rel["notes"] = rel["notes"].map(lambda n: "; ".join(n) if isinstance(n, list) else "")
    rel.to_csv(paths[2], index=False)
    return paths


