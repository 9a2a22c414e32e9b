"""Latency columns and the deploy plot (issue 18): runs timed by ``repro-export --profile NAME
--latency --log`` carry ``latency_*`` metrics; the report shows their group means beside the size
columns and draws latency, throughput and size against sparsity, dense beside CSR, one line per
method. Untimed groups are blank; a store never timed gives the table it gave before and no
deploy plot. Every expected number is worked out by hand from the metrics logged here."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from repro import records, report
from repro.report import plot_deploy
from tests.test_report import _add_run
from tests.test_report_sizes import _make, _results, client_exp  # noqa: F401 - client_exp is a fixture

LATENCY_HEADERS = ["b1 ms dense / sparse", "speedup b1 (× dense)", "b256 images/s dense / sparse", "speedup b256 (× dense)"]


def _lat(d1: float, s1: float, x1: float, d256: float, s256: float, x256: float, threads: int = 2) -> dict[str, float]:
    """The metrics of one timed run, under the writer's names."""
    return {records.LATENCY_DENSE_B1_MS: d1, records.LATENCY_SPARSE_B1_MS: s1, records.LATENCY_SPEEDUP_B1: x1,
            records.LATENCY_DENSE_B256_IPS: d256, records.LATENCY_SPARSE_B256_IPS: s256, records.LATENCY_SPEEDUP_B256: x256,
            records.LATENCY_THREADS: threads, records.LATENCY_ROUNDS: 21, records.LATENCY_CSR_LAYERS: 3}


def _sizes(sparse: float) -> dict[str, float]:
    return {records.SIZE_DENSE_BYTES: 1_066_896, records.SIZE_SPARSE_BYTES: sparse}


def _timed_store(client, exp) -> None:
    for seed in (0, 1):
        _add_run(client, exp, method="dense", seed=seed, final=0.98, start=10 + seed)
    _add_run(client, exp, method="pmp", sparsity=0.9, seed=0, final=0.97, start=20,
             extra_metrics={**_lat(0.080, 0.060, 1.30, 200_000, 300_000, 1.5), **_sizes(217_000)})
    _add_run(client, exp, method="pmp", sparsity=0.9, seed=1, final=0.97, start=21,
             extra_metrics={**_lat(0.100, 0.080, 1.20, 240_000, 320_000, 1.3), **_sizes(219_000)})
    _add_run(client, exp, method="pmp", sparsity=0.98, seed=0, final=0.96, start=22,
             extra_metrics={**_lat(0.090, 0.050, 1.80, 210_000, 400_000, 1.9), **_sizes(47_000)})
    _add_run(client, exp, method="gmp", sparsity=0.9, seed=0, final=0.965, start=30,
             extra_metrics=_lat(0.085, 0.070, 1.10, 205_000, 250_000, 1.2))
    _add_run(client, exp, method="gmp", sparsity=0.9, seed=1, final=0.965, start=31)
    _add_run(client, exp, method="snip", sparsity=0.9, seed=0, final=0.96, start=40,
             extra_metrics=_lat(0.2, 0.1, 2.0, 1000, 2000, 2.0, threads=1))
    _add_run(client, exp, method="snip", sparsity=0.9, seed=1, final=0.96, start=41,
             extra_metrics=_lat(0.2, 0.1, 2.0, 1000, 2000, 2.0, threads=2))


def test_latency_columns_per_group_by_hand_and_blank_where_untimed(mlflow_uri, tmp_path, client_exp):  # noqa: F811
    client, exp = client_exp
    _timed_store(client, exp)
    rep = _make(mlflow_uri, tmp_path)
    g = rep.groups.set_index(["method", "target"])
    # pmp 90%: means over its two runs; the speedups are means of the per-run ratios, not ratios of means
    assert g.loc[("pmp", 0.9), records.LATENCY_DENSE_B1_MS] == pytest.approx(0.090)
    assert g.loc[("pmp", 0.9), records.LATENCY_SPEEDUP_B1] == pytest.approx(1.25)
    assert g.loc[("pmp", 0.9), records.LATENCY_SPEEDUP_B256] == pytest.approx(1.4)
    assert g.loc[("gmp", 0.9), records.LATENCY_DENSE_B1_MS] == pytest.approx(0.085)  # seed 0 alone
    assert math.isnan(g.loc[("dense", 0.0), records.LATENCY_SPEEDUP_B1])
    assert "latency from 1/2 runs: the others were not timed" in g.loc[("gmp", 0.9), "notes"]
    assert "latency timed at 1, 2 threads: not comparable run to run" in g.loc[("snip", 0.9), "notes"]
    assert not [n for n in g.loc[("pmp", 0.9), "notes"] if n.startswith("latency")]

    md = (rep.out / "table.md").read_text()
    header, _ = _results(md)
    # after the size columns, before the references
    at = header.index("size_ratio (× dense file)")
    assert header[at + 1:at + 1 + len(LATENCY_HEADERS)] == LATENCY_HEADERS
    assert header[at + 1 + len(LATENCY_HEADERS)] == "references"
    lines = md.split("## Results per group", 1)[1].split("## Claims", 1)[0].splitlines()
    rows = [[c.strip() for c in ln.strip()[1:-1].split("|")] for ln in lines if ln.startswith("| ")][2:]
    shown = {(r[header.index("method")], r[header.index("target %")]): [r[header.index(h)] for h in LATENCY_HEADERS]
             for r in rows}
    assert shown == {("dense", "0"): ["", "", "", ""],
                     ("pmp", "90"): ["0.090 / 0.070", "1.25", "220000 / 310000", "1.40"],
                     ("gmp", "90"): ["0.085 / 0.070", "1.10", "205000 / 250000", "1.20"],
                     ("snip", "90"): ["0.200 / 0.100", "2.00", "1000 / 2000", "2.00"],
                     ("pmp", "98"): ["0.090 / 0.050", "1.80", "210000 / 400000", "1.90"]}
    assert "Latency columns (runs timed after the sweep by `repro-export --profile P --latency --log`" in md
    assert "torch threads: 1, 2" in md

    table = pd.read_csv(rep.out / "table.csv").set_index(["method", "target"])
    assert table.loc[("pmp", 0.9), records.LATENCY_SPARSE_B256_IPS] == pytest.approx(310_000)
    assert math.isnan(table.loc[("dense", 0.0), records.LATENCY_SPARSE_B256_IPS])


def test_no_latency_metrics_no_latency_columns_and_no_deploy_plot(mlflow_uri, tmp_path, client_exp):  # noqa: F811
    client, exp = client_exp
    for seed in (0, 1):
        _add_run(client, exp, method="dense", seed=seed, final=0.98, start=10 + seed)
        _add_run(client, exp, method="pmp", sparsity=0.9, seed=seed, final=0.97, start=20 + seed)
    rep = _make(mlflow_uri, tmp_path)
    md = (rep.out / "table.md").read_text()
    header, _ = _results(md)
    assert not set(LATENCY_HEADERS) & set(header) and "Latency columns" not in md
    assert plot_deploy.plot_deploy(rep.groups, rep.out, ("dense",)) == []


def test_deploy_plot_one_figure_per_setting_dense_beside_csr_one_line_each_per_method(
        mlflow_uri, tmp_path, client_exp, monkeypatch):  # noqa: F811
    from matplotlib.figure import Figure

    client, exp = client_exp
    _timed_store(client, exp)
    rep = _make(mlflow_uri, tmp_path)
    assert plot_deploy.DEPLOY_PREFIX in report.plot_prefixes()  # registered: the report draws it and clears old ones
    drawn: list[Figure] = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (drawn.append(self), real(self, *a, **k))[1])
    paths = plot_deploy.plot_deploy(rep.groups, rep.out, ("dense",))
    assert [p.name for p in paths] == ["deploy_vs_sparsity_lenet300_mnist.png"] and paths[0].stat().st_size > 0
    (fig,) = drawn
    latency, throughput, size = fig.axes[:3]
    # timed methods: pmp (90, 98), gmp (90), snip (90); dense untimed: per method a CSR line and a dense line
    assert len(latency.lines) == len(throughput.lines) == 6
    # size: only pmp logged sizes, so one CSR and one dense line; CSR kB = mean sparse bytes / 1000 by target
    assert len(size.lines) == 2
    ys = sorted(tuple(round(float(v), 6) for v in ln.get_ydata()) for ln in size.lines)
    assert ys == [(218.0, 47.0), (1066.896, 1066.896)]
    sparse_b1 = sorted(tuple(round(float(v), 6) for v in ln.get_ydata()) for ln in latency.lines if ln.get_linestyle() == "-")
    assert sparse_b1 == [(0.07,), (0.07, 0.05), (0.1,)]


def test_deploy_plot_names_carry_the_setting_only_where_one_model_was_timed_in_two(tmp_path):
    row = {"model": "lenet300", "dataset": "mnist", "data_source": "official", "method": "pmp", "target": 0.9,
           "width": 1.0, records.LATENCY_SPEEDUP_B1: 1.2, records.LATENCY_DENSE_B1_MS: 0.1,
           records.LATENCY_SPARSE_B1_MS: 0.08, records.LATENCY_THREADS: 2}
    groups = pd.DataFrame([{**row, "epochs": 2.0}, {**row, "epochs": 8.0}])
    names = sorted(p.name for p in plot_deploy.plot_deploy(groups, tmp_path, ("dense",)))
    assert names == ["deploy_vs_sparsity_lenet300_mnist_official_e2_w1.png",
                     "deploy_vs_sparsity_lenet300_mnist_official_e8_w1.png"]
