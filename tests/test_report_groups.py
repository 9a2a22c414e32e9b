"""Grouping by the run's group tag: runs that differ beyond the table's columns are never merged.

Two runs with the same model, method, sparsity, epochs and seed but, say, another learning
rate are different experiments. Their group tags (records.GROUP_TAG) differ, so the report
keeps them in separate groups (rows) and never takes the older for a duplicate of the newer.
"""

from __future__ import annotations

import pandas as pd
import pytest

from repro import records, report
from tests.test_report import _add_run

LR_01, LR_001 = "a1b2c3d4e5f60718", "0f1e2d3c4b5a6978"  # group tags of two learning rates


@pytest.fixture
def client_exp(mlflow_uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    return client, client.get_experiment_by_name("repro").experiment_id


def _make(mlflow_uri, tmp_path, *extra):
    return report.make_report(["--tracking-uri", mlflow_uri, "--profile", "t", "--references", str(tmp_path / "none.csv"),
                               "--out", str(tmp_path / "out"), "--no-plots", "--no-log", *extra])


def test_different_group_tags_are_two_groups_and_not_duplicates(mlflow_uri, tmp_path, client_exp):
    client, exp = client_exp
    a = _add_run(client, exp, method="pmp", sparsity=0.9, seed=0, final=0.97, start=1, tags={records.GROUP_TAG: LR_01})
    b = _add_run(client, exp, method="pmp", sparsity=0.9, seed=0, final=0.95, start=2, tags={records.GROUP_TAG: LR_001})

    raw = report.fetch_runs(mlflow_uri, "repro", "t")
    runs, left, dupes = report.split_runs(report.tidy(raw))
    assert sorted(runs["run_id"]) == sorted([a, b]) and dupes.empty and left.empty

    rep = _make(mlflow_uri, tmp_path)
    g = rep.groups
    assert len(g) == 2 and sorted(g["group"]) == sorted([LR_01, LR_001])
    by_tag = g.set_index("group")
    assert by_tag.loc[LR_01, "final_mean"] == pytest.approx(97.0)
    assert by_tag.loc[LR_001, "final_mean"] == pytest.approx(95.0)
    assert not any("duplicate" in n for notes in g["notes"] for n in notes)
    assert all(any("settings the table does not show" in n for n in notes) for notes in g["notes"])

    # the table tells the two rows apart: a group column in the markdown (short tag) and the CSV (full tag)
    md = (rep.out / "table.md").read_text()
    assert "| group |" in md and f"| {LR_01[:8]} |" in md and f"| {LR_001[:8]} |" in md
    assert "older duplicate" not in md
    table = pd.read_csv(rep.out / "table.csv", dtype={"group": str})
    assert sorted(table["group"]) == sorted([LR_01, LR_001])


def test_same_group_tag_still_deduplicates_by_seed(mlflow_uri, tmp_path, client_exp):
    client, exp = client_exp
    _add_run(client, exp, method="pmp", sparsity=0.9, seed=0, final=0.50, start=1, tags={records.GROUP_TAG: LR_01})
    newer = _add_run(client, exp, method="pmp", sparsity=0.9, seed=0, final=0.97, start=2, tags={records.GROUP_TAG: LR_01})
    rep = _make(mlflow_uri, tmp_path)
    (row,) = rep.groups.to_dict("records")
    assert row["run_ids"] == newer and row["final_mean"] == pytest.approx(97.0)
    assert "1 older duplicate run(s) ignored" in row["notes"]
    md = (rep.out / "table.md").read_text()
    assert "| group |" not in md  # one row per visible setting: nothing to tell apart


def test_untagged_and_tagged_runs_are_separate_groups(mlflow_uri, tmp_path, client_exp):
    """A run from before the tag existed is not merged with a tagged one: their configs may differ."""
    client, exp = client_exp
    _add_run(client, exp, method="pmp", sparsity=0.9, seed=0, final=0.96, start=1)
    _add_run(client, exp, method="pmp", sparsity=0.9, seed=0, final=0.97, start=2, tags={records.GROUP_TAG: LR_01})
    rep = _make(mlflow_uri, tmp_path)
    assert sorted(rep.groups["group"]) == ["", LR_01]
    md = (rep.out / "table.md").read_text()
    assert "run group (none)" in md


def test_two_dense_groups_are_named_in_the_delta_note(mlflow_uri, tmp_path, client_exp):
    client, exp = client_exp
    for seed in (0, 1):
        _add_run(client, exp, method="dense", seed=seed, final=0.98, start=10 + seed, tags={records.GROUP_TAG: LR_01})
        _add_run(client, exp, method="dense", seed=seed, final=0.96, start=20 + seed, tags={records.GROUP_TAG: LR_001})
        _add_run(client, exp, method="pmp", sparsity=0.9, seed=seed, final=0.97, start=30 + seed,
                 tags={records.GROUP_TAG: "feedfacecafe0000"})
    rep = _make(mlflow_uri, tmp_path)
    g = rep.groups
    assert list(g["method"]) == ["dense", "dense", "pmp"]
    pmp = g[g["method"] == "pmp"].iloc[0]
    (note,) = [n for n in pmp["notes"] if n.startswith("2 dense groups match")]
    assert note.endswith(f"compared with {LR_001[:8]}")  # the first in tag order, and the note says which
    assert pmp["delta_kind"] == "paired" and pmp["delta_mean"] == pytest.approx(97.0 - 96.0)


def test_frames_without_the_group_column_group_as_before():
    """Hand-built frames (no group column) are grouped by the visible keys alone."""
    runs = pd.DataFrame([{"run_id": f"r{s}", "status": "FINISHED", "start_time": pd.Timestamp("2026-01-01"),
                          "model": "lenet300", "dataset": "mnist", "data_source": "official", "method": "pmp",
                          "target": 0.9, "epochs": 2.0, "width": 1.0, "seed": s, "final_acc": 97.0 + s, "best_acc": 97.0,
                          "final_sparsity": 0.9, "final_sparsity_all": 0.89, "layer_collapse": 0.0, "commit": "c",
                          "dirty": "false"} for s in (0, 1, 1)])
    ok, _, dupes = report.split_runs(runs)
    assert len(ok) == 2 and len(dupes) == 1
    (row,) = report.summarize(ok).to_dict("records")
    assert row["n"] == 2 and row["group"] == ""
