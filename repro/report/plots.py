"""Plots: a small registry of plot functions, each declaring the data it needs.

A plot is one function registered with :func:`register_plot`, which names the file prefix it
writes (so stale PNGs of an earlier report can be removed) and what it needs from the
report: ``groups`` (the summarized table), ``refs`` (the references), ``runs`` (the tidy
runs) and ``client`` (an MlflowClient, for artifacts and metric histories). Every plot also
gets ``out`` (the folder) and ``dense_methods``. ``make_report`` loops over the registry, so a
new plot is one decorated function here and nothing else; the MlflowClient is only built
when a registered plot asks for it.
"""

from __future__ import annotations

import itertools
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro import records
from repro.report.aggregate import GROUP_SHORT
from repro.report.reading import BASE_KEYS, GROUP_COLUMN, metric_history

log = logging.getLogger(__name__)

#: what a plot may ask for, besides ``out`` and ``dense_methods`` which every plot gets
NEEDS = frozenset({"groups", "refs", "runs", "client"})


@dataclass(frozen=True)
class PlotSpec:
    """One registered plot: its name, the prefix of the files it writes, what it needs."""

    name: str
    prefix: str
    needs: tuple[str, ...]
    fn: Callable[..., list[Path]]

    def draw(self, data: Mapping[str, Any], out: Path, dense_methods: Sequence[str]) -> list[Path]:
        """Call the plot with what it declared (and only that), return the PNGs it wrote."""
        return self.fn(out=out, dense_methods=dense_methods, **{k: data[k] for k in self.needs})


#: the registered plots, in the order they are drawn and listed in table.md
PLOTS: dict[str, PlotSpec] = {}


def register_plot(prefix: str, needs: Iterable[str]) -> Callable[[Callable[..., list[Path]]], Callable[..., list[Path]]]:
    """Register a plot function that writes ``<out>/<prefix>*.png`` and reads ``needs``; returns it unchanged."""
    wanted = tuple(needs)

    def deco(fn: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
        unknown = set(wanted) - NEEDS
        if unknown:
            raise ValueError(f"plot {fn.__name__} needs {sorted(unknown)}: a plot may need {sorted(NEEDS)}")
        if fn.__name__ in PLOTS or any(p.prefix == prefix for p in PLOTS.values()):
            raise ValueError(f"plot {fn.__name__} (prefix {prefix!r}) is registered already")
        PLOTS[fn.__name__] = PlotSpec(fn.__name__, prefix, wanted, fn)
        return fn

    return deco


def registered() -> list[PlotSpec]:
    """The plots to draw, in registration order."""
    return list(PLOTS.values())


def plot_prefixes() -> tuple[str, ...]:
    """The file prefixes of every registered plot (an earlier report's PNGs with these are stale)."""
    return tuple(p.prefix for p in PLOTS.values())


# ----------------------------------------------------------------------------- helpers

ACC_PREFIX, DENSITY_PREFIX, CURVE_PREFIX = "acc_vs_sparsity_", "layer_density_", "training_curve_"
#: the columns of the layer-density artifact this module reads; unpacking the writer's tuple fails at
#: import, not silently in a plot, when the artifact's layout changes
LAYER_COLUMN, _SHAPE, _WEIGHTS, _KEPT, DENSITY_COLUMN = records.LAYER_DENSITY_COLUMNS


def _xs(s: Any) -> Any:
    """Sparsity -> -log10(1 - s): spreads 90%, 99%, 99.9% evenly."""
    return -np.log10(1.0 - np.clip(np.asarray(s, dtype=float), 0.0, 0.9999))


X_TICKS = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999]


def _colors(methods: Iterable[str]) -> dict[str, Any]:
    """One colour per method, the same in every plot of a report."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(sorted(set(methods)))}


def _slug(*parts: Any) -> str:
    """A file-name-safe join of the parts (floats without trailing zeros)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(f"{p:g}" if isinstance(p, float) else str(p) for p in parts))


@register_plot(ACC_PREFIX, needs=("groups", "refs"))
def plot_accuracy(groups: pd.DataFrame, refs: pd.DataFrame, out: Path, dense_methods: Sequence[str]) -> list[Path]:
    """Final accuracy vs sparsity per model, dataset, source, epochs and width; references as stars."""
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
        paths.append(_save(fig, ax, out / f"{ACC_PREFIX}{_slug(model, dataset, source, f'e{epochs:g}', f'w{width:g}')}.png"))
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
    """A run's layer-density artifact, or None (logged) when the run has none."""
    try:
        local = client.download_artifacts(run_id, records.LAYER_DENSITY_ARTIFACT, str(tmp))
        return pd.read_csv(local)
    except Exception as exc:  # noqa: BLE001 - a missing artifact only drops one line of a plot
        log.warning("no %s for run %s: %s", records.LAYER_DENSITY_ARTIFACT, run_id, exc)
        return None


def density_label(method: str, seed: Any, group: str, twin: bool) -> str:
    """A line's legend entry: the method and the seed drawn, plus the group tag's start where the
    same method has several groups at the target (they would otherwise share one name)."""
    if not twin:
        return f"{method} (seed {seed})"
    return f"{method} (seed {seed}, group {str(group)[:GROUP_SHORT] or '(none)'})"


@register_plot(DENSITY_PREFIX, needs=("groups", "runs", "client"))
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
            at_target = g[g["target"] == target].sort_values("method")
            twins = at_target["method"].duplicated(keep=False)  # one method in several groups (e.g. sensitivity rows)
            styles = itertools.cycle(["-", "--", ":", "-."])
            for i, grow in at_target.iterrows():
                r = runs.loc[runs["run_id"].isin(grow["run_ids"].split())]
                r = r.sort_values("seed", key=lambda s: s.map(str))
                first = r.iloc[0]
                dens = _download_density(client, first["run_id"], Path(tmp) / first["run_id"])
                if dens is None or dens.empty:
                    continue
                ax.plot(range(len(dens)), dens[DENSITY_COLUMN], marker="o", ms=3, color=colors[grow["method"]],
                        ls=next(styles) if twins[i] else "-",
                        label=density_label(grow["method"], first["seed"], grow.get(GROUP_COLUMN, ""), bool(twins[i])))
                labels = list(dens[LAYER_COLUMN])
                drawn += 1
            if not drawn:
                plt.close(fig)
                continue
            ax.set_xticks(range(len(labels)), labels, rotation=70 if len(labels) > 8 else 0, fontsize=6)
            ax.set_ylabel("density of the final mask (kept / weights)")
            ax.set_yscale("log")
            ax.set_title(f"{model} on {dataset} ({source}) at {100 * target:g}% sparsity, {epochs:g} epochs", fontsize=9)
            slug = _slug(model, dataset, source, f"s{target:g}", f"e{epochs:g}", f"w{width:g}")
            paths.append(_save(fig, ax, out / f"{DENSITY_PREFIX}{slug}.png"))
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

    acc = metric_history(client, run["run_id"], records.TEST_ACC)
    sp = metric_history(client, run["run_id"], records.SPARSITY)
    if not acc and not sp:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    if acc:
        ax.plot([s for s, _ in acc], [v for _, v in acc], marker="o", ms=3, color="tab:blue")
    ax.set_xlabel("logged step (optimizer steps; epochs in runs logged before metric namespaces)")
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
    path = out / f"{CURVE_PREFIX}{_slug(run['method'], run['model'], run['dataset'], f's{target:g}', f'seed{seed}')}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@register_plot(CURVE_PREFIX, needs=("runs", "client"))
def plot_training_curve(runs: pd.DataFrame, client: Any, out: Path, dense_methods: Sequence[str]) -> list[Path]:
    """The training curve of the run :func:`pick_curve_run` picks (none without a pruned run or histories)."""
    run = pick_curve_run(runs, dense_methods)
    if run is None:
        return []
    curve = plot_curve(run, client, out)
    return [] if curve is None else [curve]


#: the prefixes of the plots registered here (kept for callers of the old module)
PLOT_PREFIXES = plot_prefixes()
