"""The deploy plot: what a subnetwork's sparsity buys in CPU time and on disk, per model.

One figure per model, dataset, data source, epochs and width whose runs were timed
(``repro-export --profile NAME --latency --log`` logs ``latency/*`` metrics): batch-1 latency,
batch-256 throughput and file size against target sparsity, the dense network (dashed) beside the
CSR one (solid). One line per method, because methods that reach the same overall sparsity leave
different layers dense (a global mask keeps the small output layer almost whole and cuts the big
first layer hardest; a layerwise one cuts every layer alike), and a sparse kernel's time follows
the per-layer densities, not the overall one. Groups never timed draw nothing, so a store
without latency metrics gets no such file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from repro import records
from repro.report.aggregate import KB
from repro.report.plots import X_TICKS, _colors, _slug, _xs, register_plot
from repro.report.reading import BASE_KEYS

DEPLOY_PREFIX = "deploy_vs_sparsity_"
#: the three panels: (title, y label, dense column, sparse column, scale from the metric to the axis);
#: the report's column of a metric is records.column(metric)
_col = records.column
PANELS = (
    ("batch 1 latency", "forward pass at batch 1 (ms)", _col(records.LATENCY_DENSE_B1_MS),
     _col(records.LATENCY_SPARSE_B1_MS), 1.0),
    ("batch 256 throughput", "images/s at batch 256", _col(records.LATENCY_DENSE_B256_IPS),
     _col(records.LATENCY_SPARSE_B256_IPS), 1.0),
    ("file size", "kB (1000 bytes)", _col(records.SIZE_DENSE_BYTES), _col(records.SIZE_SPARSE_BYTES), 1.0 / KB),
)


def _file_name(groups: pd.DataFrame, key: tuple) -> str:
    """deploy_vs_sparsity_<model>_<dataset>.png; source, epochs and width are added only where the
    same model and dataset were timed in more than one setting (else the names would collide)."""
    model, dataset, source, epochs, width = key
    same = groups[(groups["model"] == model) & (groups["dataset"] == dataset)]
    if len(same.drop_duplicates(BASE_KEYS)) > 1:
        return f"{DEPLOY_PREFIX}{_slug(model, dataset, source, f'e{epochs:g}', f'w{width:g}')}.png"
    return f"{DEPLOY_PREFIX}{_slug(model, dataset)}.png"


def _panel(ax: Any, g: pd.DataFrame, dense_col: str, sparse_col: str, scale: float, colors: dict[str, Any]) -> None:
    """One line per method: sparse solid with filled markers, dense dashed with open ones."""
    for method, m in g.groupby("method", sort=True):
        m = m.sort_values("target")
        x = _xs(m["target"])
        for col, style, face in ((sparse_col, "-", colors[method]), (dense_col, "--", "none")):
            if col in m and m[col].notna().any():
                ax.plot(x, m[col] * scale, ls=style, marker="o", ms=4, color=colors[method], markerfacecolor=face)


@register_plot(DEPLOY_PREFIX, needs=("groups",))
def plot_deploy(groups: pd.DataFrame, out: Path, dense_methods: Sequence[str]) -> list[Path]:
    """Latency, throughput and size vs sparsity, dense beside CSR, one line per method (timed groups only)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if records.column(records.LATENCY_DONE) not in groups:
        return []
    timed = groups[groups[records.column(records.LATENCY_DONE)].notna()]
    colors = _colors(groups["method"])
    paths = []
    for key, g in timed.groupby(BASE_KEYS, sort=True):
        model, dataset, source, epochs, width = key
        fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.4))
        ticks = [t for t in X_TICKS if t <= max(0.9, float(g["target"].max())) + 1e-9]
        for ax, (title, ylabel, dense_col, sparse_col, scale) in zip(axes, PANELS, strict=True):
            _panel(ax, g, dense_col, sparse_col, scale, colors)
            ax.set_title(title, fontsize=9)
            ax.set_ylabel(ylabel)
            ax.set_xticks(_xs(ticks), [f"{100 * t:g}" for t in ticks])
            ax.set_xlabel("target sparsity (%; log scale of weights remaining)")
            ax.grid(alpha=0.3)
        axes[-1].set_yscale("log")
        handles = [Line2D([], [], color=colors[m], marker="o", label=m) for m in sorted(set(g["method"]))]
        handles += [Line2D([], [], color="grey", ls="-", label="CSR (sparse kernels, CSR file)"),
                    Line2D([], [], color="grey", ls="--", marker="o", markerfacecolor="none",
                           label="dense (dense kernels, fp32 file)")]
        axes[0].legend(handles=handles, fontsize=7)
        threads = sorted({int(t) for t in g.get(records.column(records.LATENCY_THREADS), pd.Series(dtype=float)).dropna()})
        fig.suptitle(f"{model} on {dataset} ({source}), {epochs:g} epochs, width {width:g}: CPU, "
                     f"{'/'.join(map(str, threads)) or '?'} torch thread(s), medians of interleaved rounds, "
                     "mean over seeds", fontsize=9)
        fig.tight_layout()
        path = out / _file_name(timed, key)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths

