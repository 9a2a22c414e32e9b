"""How much PMP's result moves with the settings its paper does not disclose (issue 19).

The ``sensitivity`` profile (conf/profile/sensitivity.yaml) moves one setting at a time away
from our default PMP (schedule/linear.yaml, optim/sgd_multistep.yaml, pruner/pmp.yaml). This
module finds that design in the runs themselves, from their logged params, so a row added to
the profile joins its setting without a change here:

- a run whose setting params all equal :data:`DEFAULTS` is the default point, and is a value of
  every setting;
- a run that differs from the defaults only in the params of one :class:`Setting` is one value
  of that setting; a run that differs in two settings' params is off the design and left out
  (counted in the notes);
- runs are only compared within one context: the same model, dataset, data source, epochs,
  width and recipe (optimizer, learning rate, batch size, validation split), and only where
  that context has a default point. Dense runs of the context give the reference line.

For each setting and target sparsity the final test accuracies of its values are compared by
the **range of the value means** (the spread a reader could get by choosing differently)
against the **pooled within-value standard deviation** (the seed-to-seed spread), and by a
one-way ANOVA (scipy.stats.f_oneway): a setting "moves the result" where the ANOVA rejects
equal means at 5%. ``ranking.csv`` ranks the settings by spread / seed std.
"""

from __future__ import annotations

import ast
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.report.reading import RECIPE_PARAMS
from repro.report.stats import t_interval

#: the file prefix of the per-setting plots (stale ones are removed before a report)
PLOT_PREFIX = "sensitivity_"
RANKING_CSV = "ranking.csv"
SECTION_MD = "sensitivity.md"
#: the significance level of the one-way ANOVA behind "moves the result"
ALPHA = 0.05
MOVES, NOISE, TOO_FEW = "moves the result", "within seed noise", "too few seeds"

#: our default PMP's value of every param a setting may move (normalised as :func:`norm` does);
#: tests/test_sensitivity.py checks these against the composed default config
DEFAULTS: dict[str, Any] = {
    "schedule.start": 0.0,
    "schedule.end": 0.5,
    "schedule.update_frequency": 50.0,
    "schedule.update_unit": "iterations",
    "schedule.name": "linear",
    "optim.lr_schedule": "multistep",
    "optim.milestones": (0.5, 0.75),
    "pruner.scope": "global",
}
#: what must be equal for two runs to be compared (tidy columns of repro.report.reading)
CONTEXT = ["model", "dataset", "data_source", "epochs", "width", *RECIPE_PARAMS]


def norm(value: Any) -> Any:
    """A logged param (a string) -> a comparable value: numbers as float, lists as tuples of floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    if isinstance(value, (list, tuple)):
        return tuple(float(v) for v in value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return str(value)


def _lr_label(p: Mapping[str, Any]) -> tuple[str, tuple]:
    """Where our default window ends relative to the LR decays, e.g. 'ends before both decays (0.625, 0.875)'."""
    sched = p["optim.lr_schedule"]
    if sched != "multistep":
        return (f"{sched} LR (control)", (1, sched))
    ms = tuple(sorted(p["optim.milestones"]))
    end = DEFAULTS["schedule.end"]
    before = sum(m > end for m in ms)  # decays still to come when the ramp ends
    at = sum(math.isclose(m, end) for m in ms)
    if at:
        where = "ends at a decay"
    elif before == len(ms):
        where = "ends before both decays" if len(ms) == 2 else "ends before the decays"
    elif before == 0:
        where = "ends after both decays" if len(ms) == 2 else "ends after the decays"
    else:
        where = "ends between the decays"
    return (f"{where} ({', '.join(f'{m:g}' for m in ms)})", (0, -before - 0.5 * at))


def _freq_label(p: Mapping[str, Any]) -> tuple[str, tuple]:
    f, unit = p["schedule.update_frequency"], p["schedule.update_unit"]
    word = "it" if unit == "iterations" else ("epoch" if f == 1 else "epochs")
    return (f"{f:g} {word}", (unit != "iterations", f))


def _value_label(param: str, order: Sequence[str] = ()) -> Callable[[Mapping[str, Any]], tuple[str, tuple]]:
    def label(p: Mapping[str, Any]) -> tuple[str, tuple]:
        v = p[param]
        if isinstance(v, float):
            return (f"{v:g}", (0, v))
        return (str(v), (0, list(order).index(v) if v in order else len(order), str(v)))
    return label


@dataclass(frozen=True)
class Setting:
    """One undisclosed setting: the params it moves and how a value is labelled and ordered."""

    name: str
    title: str
    params: tuple[str, ...]
    #: params -> (the value's label, a sort key for the x axis)
    label: Callable[[Mapping[str, Any]], tuple[str, tuple]]


SETTINGS: tuple[Setting, ...] = (
    Setting("window_end", "end of the pruning window (fraction of training)", ("schedule.end",),
            _value_label("schedule.end")),
    Setting("window_start", "start of the pruning window (fraction of training)", ("schedule.start",),
            _value_label("schedule.start")),
    Setting("update_frequency", "a mask update every", ("schedule.update_frequency", "schedule.update_unit"),
            _freq_label),
    Setting("ramp_shape", "shape of the sparsity ramp", ("schedule.name",),
            _value_label("schedule.name", ("linear", "cubic", "exponential"))),
    Setting("lr_decays", "the window's end (0.5) against the LR decays", ("optim.lr_schedule", "optim.milestones"),
            _lr_label),
    Setting("selection", "mask selection", ("pruner.scope",), _value_label("pruner.scope", ("global", "layerwise"))),
)


def classify(params: Mapping[str, Any]) -> str | None:
    """'default', the one setting this run's params move, or None (off the design: two settings moved)."""
    moved = {s.name for s in SETTINGS for k in s.params if params.get(k, DEFAULTS[k]) != DEFAULTS[k]}
    if not moved:
        return "default"
    return moved.pop() if len(moved) == 1 else None


def _with_params(runs: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """The tidy runs with the setting params (normalised; missing -> the default) joined from the raw frame."""
    cols = {f"params.{k}": k for k in DEFAULTS if f"params.{k}" in raw.columns}
    extra = raw[["run_id", *cols]].rename(columns=cols) if cols else raw[["run_id"]].copy()
    out = runs.merge(extra, on="run_id", how="left")
    for k, default in DEFAULTS.items():
        out[k] = out[k].map(norm).map(lambda v, d=default: d if v == "" else v) if k in out else [default] * len(out)
    return out


@dataclass
class Analysis:
    """The cells (one per context, setting, sparsity and value), the ranking, the dense lines, notes."""

    cells: pd.DataFrame
    ranking: pd.DataFrame
    dense: pd.DataFrame
    notes: list[str]

    @property
    def empty(self) -> bool:
        return self.ranking.empty


CELL_COLUMNS = ["context", "setting", "target", "value", "order", "is_default", "n", "mean", "std", "lo", "hi",
                "accs"]
RANKING_COLUMNS = ["rank", "setting", "sparsity", "values", "seeds_per_cell", "spread_pp", "seed_std_pp",
                   "spread_over_std", "anova_F", "anova_p", "verdict", "default_acc", "best_value", "best_acc",
                   "worst_value", "worst_acc", "largest_shift_vs_default_pp", "largest_shift_value", "context"]


def _context_label(key: tuple) -> str:
    d = dict(zip(CONTEXT, key, strict=True))
    return (f"{d['model']} on {d['dataset']} ({d['data_source']}), {float(d['epochs']):g} epochs, "
            f"{d['optim_name']} lr {d['optim_lr']}, batch {d['batch_size']}")


def analyse(runs: pd.DataFrame, raw: pd.DataFrame, confidence: float = 0.95,
            dense_methods: Sequence[str] = ("dense",)) -> Analysis:
    """Find the one-at-a-time design in the runs and compare each setting's values (see the module doc)."""
    from scipy.stats import f_oneway

    empty = Analysis(pd.DataFrame(columns=CELL_COLUMNS), pd.DataFrame(columns=RANKING_COLUMNS),
                     pd.DataFrame(columns=["context", "n", "mean", "lo", "hi"]), [])
    if runs.empty or raw.empty:
        return empty
    df = _with_params(runs, raw)
    for c in CONTEXT:
        if c not in df:
            df[c] = ""
    df["context"] = [_context_label(tuple(r)) for r in df[CONTEXT].itertuples(index=False)]
    dense = df[df["method"].isin(list(dense_methods))]
    pruned = df[~df["method"].isin(list(dense_methods))].copy()
    pruned["design"] = [classify(r) for r in pruned[list(DEFAULTS)].to_dict("records")]
    notes: list[str] = []
    off = int(pruned["design"].isna().sum())
    if off:
        notes.append(f"{off} run(s) move more than one setting at once and are left out of the sensitivity analysis")

    cells, ranking = [], []
    for (context, method, target), g in pruned.dropna(subset=["design"]).groupby(["context", "method", "target"]):
        default = g[g["design"] == "default"]
        if default.empty:
            continue
        for setting in SETTINGS:
            members = g[g["design"].isin(["default", setting.name])]
            values: dict[str, dict[str, Any]] = {}
            for rec in members.to_dict("records"):
                label, order = setting.label(rec)
                v = values.setdefault(label, {"order": order, "is_default": rec["design"] == "default", "accs": []})
                v["accs"].append(float(rec["final_acc"]))
            if len(values) < 2:
                continue
            rows = []
            for label, v in values.items():
                st = t_interval(v["accs"], confidence)
                rows.append({"context": context, "setting": setting.name, "target": float(target), "value": label,
                             "order": v["order"], "is_default": v["is_default"], "n": st.n, "mean": st.mean,
                             "std": st.std, "lo": st.lo, "hi": st.hi, "accs": v["accs"]})
            rows.sort(key=lambda r: r["order"])
            cells += rows
            ranking.append(_rank_row(setting, context, float(target), rows, f_oneway))
        if method != "pmp":
            notes.append(f"the design at {float(target):g} in '{context}' is of method {method}")
    if not cells:
        return empty
    dense_rows = []
    for context, g in dense.groupby("context"):
        st = t_interval(g["final_acc"], confidence)
        dense_rows.append({"context": context, "n": st.n, "mean": st.mean, "lo": st.lo, "hi": st.hi})
    rank = pd.DataFrame(ranking, columns=[c for c in RANKING_COLUMNS if c != "rank"])
    rank = rank.sort_values(["sparsity", "spread_over_std"], ascending=[True, False], kind="stable")
    rank.insert(0, "rank", rank.groupby(["context", "sparsity"]).cumcount() + 1)
    return Analysis(pd.DataFrame(cells, columns=CELL_COLUMNS), rank.reset_index(drop=True),
                    pd.DataFrame(dense_rows, columns=["context", "n", "mean", "lo", "hi"]), notes)


def _rank_row(setting: Setting, context: str, target: float, rows: list[dict[str, Any]],
              f_oneway: Callable[..., Any]) -> dict[str, Any]:
    """Spread of the value means against the pooled seed std, and the one-way ANOVA, for one setting."""
    means = [r["mean"] for r in rows]
    dof = sum(r["n"] - 1 for r in rows)
    pooled = math.sqrt(sum((r["n"] - 1) * r["std"] ** 2 for r in rows if r["n"] > 1) / dof) if dof > 0 else math.nan
    spread = max(means) - min(means)
    if all(r["n"] >= 2 for r in rows):
        res = f_oneway(*[r["accs"] for r in rows])
        f_stat, p = float(res.statistic), float(res.pvalue)
        verdict = MOVES if p < ALPHA else NOISE
    else:
        f_stat, p, verdict = math.nan, math.nan, TOO_FEW
    default = next(r for r in rows if r["is_default"])
    best = max(rows, key=lambda r: r["mean"])
    worst = min(rows, key=lambda r: r["mean"])
    shift = max((r for r in rows if not r["is_default"]), key=lambda r: abs(r["mean"] - default["mean"]))
    return {"setting": setting.name, "sparsity": target, "values": len(rows),
            "seeds_per_cell": _span(r["n"] for r in rows), "spread_pp": spread, "seed_std_pp": pooled,
            "spread_over_std": spread / pooled if pooled and pooled > 0 else math.nan,
            "anova_F": f_stat, "anova_p": p, "verdict": verdict, "default_acc": default["mean"],
            "best_value": best["value"], "best_acc": best["mean"], "worst_value": worst["value"],
            "worst_acc": worst["mean"], "largest_shift_vs_default_pp": shift["mean"] - default["mean"],
            "largest_shift_value": shift["value"], "context": context}


def _span(ns: Any) -> str:
    ns = sorted(set(int(n) for n in ns))
    return f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"


# ----------------------------------------------------------------------------- output

def write(analysis: Analysis, out: Path, plots: bool = True) -> list[Path]:
    """ranking.csv, sensitivity.md and one plot per setting (and context) into ``out``; nothing if empty."""
    if analysis.empty:
        return []
    out.mkdir(parents=True, exist_ok=True)
    ranking = out / RANKING_CSV
    ranking_for_csv(analysis.ranking).to_csv(ranking, index=False)
    pngs = _plot(analysis, out) if plots else []
    md = out / SECTION_MD
    md.write_text(markdown(analysis, pngs))
    return [ranking, md, *pngs]


def _pm(mean: float, lo: float, hi: float) -> str:
    return f"{mean:.2f}" if not np.isfinite(lo) else f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"


def markdown(analysis: Analysis, pngs: Sequence[Path] = ()) -> str:
    """The ranking, what moves the result by more than seed noise, and every cell (mean and 95% interval)."""
    from repro.report.render import markdown_table

    parts = ["# Sensitivity of PMP to its undisclosed settings", "",
             "Final test accuracy (%). Per setting and sparsity: **spread** = range of the value means; "
             "**seed std** = pooled within-value standard deviation over seeds; a setting **moves the result** "
             f"where a one-way ANOVA over its values rejects equal means at {ALPHA:g} (scipy.stats.f_oneway). "
             "Ranked by spread / seed std. The default is our preset's value; every setting shares its runs.", ""]
    r = analysis.ranking
    parts.append(markdown_table(
        ["rank", "setting", "sparsity", "values", "seeds", "spread (pp)", "seed std (pp)", "spread/std", "F", "p",
         "verdict", "default", "largest shift vs default"],
        [[x.rank, x.setting, f"{100 * x.sparsity:g}%", x.values, x.seeds_per_cell, f"{x.spread_pp:.2f}",
          f"{x.seed_std_pp:.2f}", f"{x.spread_over_std:.1f}", f"{x.anova_F:.1f}", f"{x.anova_p:.3g}", x.verdict,
          f"{x.default_acc:.2f}", f"{x.largest_shift_vs_default_pp:+.2f} ({x.largest_shift_value})"]
         for x in r.itertuples()]))
    parts += ["", "## What moves the result", ""]
    for x in r.itertuples():
        parts.append(f"- {100 * x.sparsity:g}%, {x.setting}: {x.verdict} (spread {x.spread_pp:.2f} pp vs seed std "
                     f"{x.seed_std_pp:.2f} pp, p = {x.anova_p:.3g}); best {x.best_value} {x.best_acc:.2f}, "
                     f"worst {x.worst_value} {x.worst_acc:.2f}")
    for context, c in analysis.cells.groupby("context", sort=False):
        parts += ["", f"## Every value: {context}", ""]
        d = analysis.dense[analysis.dense["context"] == context]
        if len(d):
            parts += [f"Dense: {_pm(d['mean'].iloc[0], d['lo'].iloc[0], d['hi'].iloc[0])} (n={int(d['n'].iloc[0])})", ""]
        parts.append(markdown_table(
            ["setting", "sparsity", "value", "n", "final acc, mean [95% CI]"],
            [[x.setting, f"{100 * x.target:g}%", x.value + (" (default)" if x.is_default else ""), x.n,
              _pm(x.mean, x.lo, x.hi)] for x in c.itertuples()]))
    if analysis.notes:
        parts += ["", "Notes: " + "; ".join(analysis.notes) + "."]
    parts += ["", *[f"![{p.stem}]({p.name})" for p in pngs]]
    return "\n".join(parts) + "\n"


def ranking_for_csv(ranking: pd.DataFrame) -> pd.DataFrame:
    """4 decimals for pp and ratios, but 3 significant digits for p (a fixed round writes 3e-08 as 0.0)."""
    return ranking.round(4).assign(anova_p=ranking["anova_p"].map(lambda p: float(f"{p:.3g}")))


def _plot(analysis: Analysis, out: Path) -> list[Path]:
    """Final accuracy against each setting's values: one panel per sparsity, mean and 95% interval."""
    import matplotlib.pyplot as plt

    from repro.report.plots import _slug

    paths = []
    contexts = list(dict.fromkeys(analysis.cells["context"]))
    for ci, context in enumerate(contexts):
        cc = analysis.cells[analysis.cells["context"] == context]
        dense = analysis.dense[analysis.dense["context"] == context]
        for setting in SETTINGS:
            s = cc[cc["setting"] == setting.name]
            if s.empty:
                continue
            targets = sorted(s["target"].unique())
            panel_width = max(4.2, 0.8 * s.groupby("target").size().max() + 1.5)  # room for each value's label
            fig, axes = plt.subplots(1, len(targets), figsize=(panel_width * len(targets), 3.8), squeeze=False)
            for ax, target in zip(axes[0], targets, strict=True):
                t = s[s["target"] == target]
                x = np.arange(len(t))
                yerr = np.vstack([t["mean"] - t["lo"], t["hi"] - t["mean"]]).astype(float)
                yerr = np.nan_to_num(yerr, nan=0.0)
                colors = ["tab:red" if d else "tab:blue" for d in t["is_default"]]
                for xi, (m, e0, e1, c) in enumerate(zip(t["mean"], yerr[0], yerr[1], colors, strict=True)):
                    ax.errorbar([xi], [m], yerr=[[e0], [e1]], fmt="o", color=c, capsize=4)
                for xi, accs in zip(x, t["accs"], strict=True):
                    ax.scatter([xi] * len(accs), accs, s=8, color="grey", alpha=0.6, zorder=1)
                if len(dense):
                    ax.axhline(dense["mean"].iloc[0], color="black", ls="--", lw=1, label="dense")
                # long value names ("ends between the decays (0.25, 0.75)") wrapped so neighbours don't overlap
                ax.set_xticks(x, [textwrap.fill(v, 12) for v in t["value"]], fontsize=7)
                ax.set_title(f"{100 * target:g}% sparsity", fontsize=9)
                ax.set_ylabel("final test accuracy (%)")
                ax.grid(axis="y", alpha=0.3)
            axes[0][0].legend(fontsize=7, loc="lower left")
            fig.suptitle(f"PMP: {setting.title}\n{context}; red = our default; mean and 95% interval, dots = seeds",
                         fontsize=8)
            fig.tight_layout()
            suffix = f"_{ci}" if len(contexts) > 1 else ""
            path = out / f"{PLOT_PREFIX}{_slug(setting.name)}{suffix}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths
