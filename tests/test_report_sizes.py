"""Size columns (issue 18): what the exported CSR file weighs beside the dense fp32 file, per group.

Runs with ``trainer.export=true`` log ``size_*`` metrics (repro.export.sizes). The report shows,
beside the cost columns, the exported file in kB and its ratio to the dense file (raw, gzip,
zstd), each ratio taken run by run and then averaged over the group's runs. Groups none of whose
runs exported are blank, and a store without any size metric gives the table it gave before.
Every expected number below is worked out by hand from the metrics the test logs.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from repro import records, report
from tests.test_report import _add_run

#: the results-per-group columns the size metrics add, in order, as table.md heads them
SIZE_HEADERS = ["size_sparse_kB", "size_ratio (× dense file)", "size_gzip_ratio (× dense gzip)",
                "size_zstd_ratio (× dense zstd)"]


def _sizes(dense: int, sparse: int, dense_gz: int, sparse_gz: int, dense_zst: int | None = None,
           sparse_zst: int | None = None) -> dict[str, float]:
    """The size metrics of one exported run, under the names the training side logs them with."""
    out = {records.SIZE_DENSE_BYTES: dense, records.SIZE_SPARSE_BYTES: sparse,
           records.SIZE_DENSE_GZIP_BYTES: dense_gz, records.SIZE_SPARSE_GZIP_BYTES: sparse_gz,
           records.SIZE_PARAMS: 266_610, records.SIZE_NONZERO_PARAMS: 26_661}
    if dense_zst is not None:
        out |= {records.SIZE_DENSE_ZSTD_BYTES: dense_zst, records.SIZE_SPARSE_ZSTD_BYTES: sparse_zst}
    return out


@pytest.fixture
def client_exp(mlflow_uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    return client, client.get_experiment_by_name("repro").experiment_id


def _make(mlflow_uri, tmp_path):
    return report.make_report(["--tracking-uri", mlflow_uri, "--profile", "t", "--references", str(tmp_path / "none.csv"),
                               "--out", str(tmp_path / "out"), "--no-plots", "--no-log"])


def _results(md: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(header, method -> {header: cell}) of table.md's results-per-group table (one group per method here)."""
    lines = md.split("## Results per group", 1)[1].split("## Claims", 1)[0].splitlines()
    table = [ln for ln in lines if ln.startswith("| ")]
    cells = [[c.strip() for c in ln.strip()[1:-1].split("|")] for ln in table]  # no cell here holds a "|"
    header = cells[0]
    rows = [dict(zip(header, r, strict=True)) for r in cells[2:]]
    return header, {r["method"]: r for r in rows}


def test_size_columns_per_group_by_hand_and_blank_without_metrics(mlflow_uri, tmp_path, client_exp):
    client, exp = client_exp
    flops = {records.COST_TRAIN_FLOPS: 100.0}
    # dense, exported: the "CSR" file stores every weight dense, a few hundred bytes of header more
    for seed in (0, 1):
        _add_run(client, exp, method="dense", seed=seed, final=0.98, start=10 + seed, costs=flops,
                 extra_metrics=_sizes(1_000_000, 1_000_400, 920_000, 920_092))
    # pmp at 90%: two runs whose dense files differ, so the mean of the ratios (0.175) is not the ratio
    # of the means (310_000 / 1_800_000 = 0.1722...); zstd logged (it was installed)
    _add_run(client, exp, method="pmp", sparsity=0.9, seed=0, final=0.97, start=20, costs={records.COST_TRAIN_FLOPS: 60.0},
             extra_metrics=_sizes(1_000_000, 150_000, 920_000, 115_000, 910_000, 91_000))
    _add_run(client, exp, method="pmp", sparsity=0.9, seed=1, final=0.97, start=21, costs={records.COST_TRAIN_FLOPS: 60.0},
             extra_metrics=_sizes(800_000, 160_000, 720_000, 97_200, 700_000, 84_000))
    # gmp at 90%: only seed 0 exported
    _add_run(client, exp, method="gmp", sparsity=0.9, seed=0, final=0.965, start=30,
             extra_metrics=_sizes(1_000_000, 120_000, 920_000, 92_000))
    for seed in (1, 2):
        _add_run(client, exp, method="gmp", sparsity=0.9, seed=seed, final=0.965, start=30 + seed)
    # snip at 90%: older runs, written before export existed
    for seed in (0, 1):
        _add_run(client, exp, method="snip", sparsity=0.9, seed=seed, final=0.96, start=40 + seed)

    rep = _make(mlflow_uri, tmp_path)
    g = rep.groups.set_index("method")
    # kB: mean sparse bytes / 1000; ratios: per run sparse / dense, then the mean over the group's runs
    expected = {
        "dense": {"size_sparse_kB": 1000.4, "size_ratio": 1.0004, "size_gzip_ratio": 1.0001, "size_zstd_ratio": math.nan},
        # (150_000 + 160_000) / 2 / 1000; (0.15 + 0.20) / 2; (0.125 + 0.135) / 2; (0.10 + 0.12) / 2
        "pmp": {"size_sparse_kB": 155.0, "size_ratio": 0.175, "size_gzip_ratio": 0.13, "size_zstd_ratio": 0.11},
        # seed 0 alone: 120_000 / 1000; 120_000 / 1_000_000; 92_000 / 920_000
        "gmp": {"size_sparse_kB": 120.0, "size_ratio": 0.12, "size_gzip_ratio": 0.1, "size_zstd_ratio": math.nan},
        "snip": {c: math.nan for c in ("size_sparse_kB", "size_ratio", "size_gzip_ratio", "size_zstd_ratio")},
    }
    for method, cols in expected.items():
        for col, want in cols.items():
            got = g.loc[method, col]
            assert (math.isnan(got) if math.isnan(want) else got == pytest.approx(want)), (method, col, got, want)
    assert g.loc["pmp", records.column(records.SIZE_SPARSE_BYTES)] == pytest.approx(155_000.0)  # raw means: table.csv
    assert "sizes from 1/3 runs: the others did not export" in g.loc["gmp", "notes"]
    assert not any(n.startswith("sizes from") for m in ("dense", "pmp", "snip") for n in g.loc[m, "notes"])

    md = (rep.out / "table.md").read_text()
    header, rows = _results(md)
    # beside the cost column, before the references
    at = header.index("cost_train_flops (× dense)")
    assert header[at + 1:at + 1 + len(SIZE_HEADERS)] == SIZE_HEADERS and header[at + 1 + len(SIZE_HEADERS)] == "references"
    shown = {m: [rows[m][h] for h in SIZE_HEADERS] for m in rows}
    assert shown == {"dense": ["1000.4", "1.000", "1.000", ""],
                     "pmp": ["155.0", "0.175", "0.130", "0.110"],
                     "gmp": ["120.0", "0.120", "0.100", ""],
                     "snip": ["", "", "", ""]}
    assert ("bytes of the exported safetensors file (torch.save where safetensors is not installed), CSR for "
            "pruned weights; ratio to the dense fp32 file.") in md

    table = pd.read_csv(rep.out / "table.csv").set_index("method")
    assert table.loc["pmp", "size_ratio"] == pytest.approx(0.175)
    assert table.loc["pmp", "size_sparse_kB"] == pytest.approx(155.0)
    assert table.loc["gmp", "size_gzip_ratio"] == pytest.approx(0.1)
    assert table.loc[["snip"], ["size_sparse_kB", "size_ratio", "size_gzip_ratio"]].isna().to_numpy().all()


def test_no_size_metrics_no_size_columns(mlflow_uri, tmp_path, client_exp):
    """A store in which no run exported renders as before: no size column, no size sentence, no size note."""
    client, exp = client_exp
    for seed in (0, 1):
        _add_run(client, exp, method="dense", seed=seed, final=0.98, start=10 + seed)
        _add_run(client, exp, method="pmp", sparsity=0.9, seed=seed, final=0.97, start=20 + seed)
    rep = _make(mlflow_uri, tmp_path)
    md = (rep.out / "table.md").read_text()
    header, _ = _results(md)
    assert not [h for h in header if h.startswith(records.SIZE_PREFIX)]
    assert "Size columns" not in md
    assert not [c for c in pd.read_csv(rep.out / "table.csv").columns if c.startswith(records.SIZE_PREFIX)]
    assert report.size_columns(rep.groups) == []
