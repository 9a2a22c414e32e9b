"""repro-report on a synthetic MLflow store: grouping, statistics, references, verdicts, exclusions, files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from repro import report

T_975_2 = 4.302652729749464  # Student-t 97.5% quantile, 2 degrees of freedom (printed tables: 4.303)

REFS = ",".join(report.REF_COLUMNS) + """
r_ok,literature,test,test,pmp,LeNet-300-100,lenet300,yes,mnist,0.95,,prunable,97.6,final,2,two_sided,,test,,
r_not,claim_accuracy,test,test,pmp,LeNet-300-100,lenet300,yes,mnist,0.95,,prunable,99.5,final,2,at_least,,test,,
r_inc,literature,test,test,pmp,LeNet-300-100,lenet300,yes,mnist,0.95,,prunable,97.2,final,2,two_sided,,test,,
r_best,literature,test,test,pmp,LeNet-300-100,lenet300,approx,mnist,0.95,,all,97.9,best_epoch,160,two_sided,,test,,a note
r_delta,claim_delta_vs_dense,test,test,pmp,LeNet-300-100,lenet300,yes,mnist,0.90,0.96,prunable,0.0,final,2,two_sided,0.1,test,,
r_single,literature,test,test,snip,LeNet-300-100,lenet300,yes,mnist,0.95,,prunable,97.0,unknown,,two_sided,,test,,
r_none,literature,test,test,grasp,VGG19,vgg19,yes,cifar10,0.98,,prunable,92.19,best_epoch,160,two_sided,,test,,
"""


# ----------------------------------------------------------------------------- pure statistics


def test_t_interval_matches_hand_computation():
    s = report.t_interval([90.0, 92.0, 94.0])
    half = T_975_2 * 2.0 / math.sqrt(3)  # t * std / sqrt(n), std = 2
    assert (s.n, s.mean, s.std) == (3, pytest.approx(92.0), pytest.approx(2.0))
    assert (s.lo, s.hi) == (pytest.approx(92.0 - half), pytest.approx(92.0 + half))
    assert s.lo == pytest.approx(87.0317, abs=1e-4)


def test_t_interval_needs_two_values():
    one = report.t_interval([93.0, float("nan")])
    assert one.n == 1 and one.mean == 93.0 and math.isnan(one.lo) and math.isnan(one.std)
    assert report.t_interval([]).n == 0


def test_paired_difference_by_seed():
    d = report.difference({0: 91.0, 1: 92.0, 2: 93.0, 7: 50.0}, {0: 90.5, 1: 91.0, 2: 92.5})
    # seed 7 has no partner; diffs 0.5, 1.0, 0.5: mean 2/3, std sqrt(1/12)
    std = math.sqrt(1 / 12)
    assert d.kind == "paired" and d.n == 3
    assert d.mean == pytest.approx(2 / 3)
    assert d.hi - d.mean == pytest.approx(T_975_2 * std / math.sqrt(3))


def test_unpaired_difference_is_welch():
    from scipy import stats

    d = report.difference({0: 1.0, 1: 2.0, 2: 3.0}, {5: 2.0, 6: 4.0})
    ref = stats.ttest_ind([1.0, 2.0, 3.0], [2.0, 4.0], equal_var=False).confidence_interval(0.95)
    assert d.kind == "unpaired" and d.mean == pytest.approx(-1.0)
    assert (d.lo, d.hi) == (pytest.approx(ref.low), pytest.approx(ref.high))


@pytest.mark.parametrize(("lo", "hi", "ref", "direction", "expected"), [
    (95.0, 96.0, 95.12, "at_least", "reproduced"),        # lower bound >= 95.12 - 0.5
    (93.0, 94.5, 95.12, "at_least", "not reproduced"),    # upper bound < 94.62
    (94.0, 96.0, 95.12, "at_least", "inconclusive"),
    (91.6, 92.4, 92.0, "two_sided", "reproduced"),        # inside 92 +- 0.5
    (92.6, 93.0, 92.0, "two_sided", "not reproduced"),    # wholly above 92.5
    (90.0, 91.4, 92.0, "two_sided", "not reproduced"),    # wholly below 91.5
    (91.4, 92.2, 92.0, "two_sided", "inconclusive"),
    (float("nan"), float("nan"), 92.0, "two_sided", "inconclusive"),
])
def test_verdict(lo, hi, ref, direction, expected):
    assert report.verdict(lo, hi, ref, 0.5, direction) == expected


def test_combine_verdicts():
    assert report.combine(["reproduced", "reproduced"]) == "reproduced"
    assert report.combine(["reproduced", "inconclusive"]) == "inconclusive"
    assert report.combine(["inconclusive", "not reproduced"]) == "not reproduced"
    assert report.combine([]) == "no runs"


def _runs(rows: list[dict]) -> pd.DataFrame:
    base = {"status": "FINISHED", "data_source": "official", "epochs": 2.0, "width": 1.0, "commit": "c1", "dirty": "false",
            "best_acc": np.nan, "final_sparsity": np.nan, "final_sparsity_all": np.nan, "layer_collapse": 0.0,
            "run_name": "", "failure": "", "train_subset": np.nan, "test_subset": np.nan}
    df = pd.DataFrame([{**base, "run_id": f"id{i}", **r} for i, r in enumerate(rows)])
    df["start_time"] = pd.Timestamp("2026-01-01")
    return df


def test_summarize_flags_jpeg_commits_and_dense_at_other_epochs():
    runs = _runs([
        {"model": "vgg19", "dataset": "cifar10", "data_source": "jpeg", "method": "dense", "target": 0.0, "seed": 0,
         "epochs": 3.0, "final_acc": 93.0},
        {"model": "vgg19", "dataset": "cifar10", "data_source": "jpeg", "method": "pmp", "target": 0.98, "seed": 0,
         "final_acc": 92.0, "final_sparsity": 0.98, "commit": "c1", "train_subset": 5000.0},
        {"model": "vgg19", "dataset": "cifar10", "data_source": "jpeg", "method": "pmp", "target": 0.98, "seed": 1,
         "final_acc": 92.4, "final_sparsity": 0.98, "commit": "c2", "layer_collapse": 1.0},
    ])
    groups = report.summarize(runs)
    pmp = groups[groups["method"] == "pmp"].iloc[0]
    notes = "; ".join(pmp["notes"])
    assert "JPEG copy" in notes and "2 commits" in notes and "layer collapse in 1/2" in notes
    assert "dense baseline trained 3 epochs" in notes and "train subset of 5000 images" in notes
    assert pmp["delta_kind"] == "unpaired" and pmp["delta_mean"] == pytest.approx(92.2 - 93.0)


def test_summarize_flags_runs_at_chance():
    runs = _runs([{"model": "lenet300", "dataset": "mnist", "method": "grasp", "target": 0.5, "seed": s, "final_acc": acc,
                   "final_sparsity": 0.5} for s, acc in enumerate((10.0, 97.5))])
    (row,) = report.summarize(runs).to_dict("records")
    assert "at chance (final acc <= 11%) in 1/2 runs" in "; ".join(row["notes"])
    trained = report.summarize(runs.iloc[1:]).iloc[0]
    assert not any("chance" in n for n in trained["notes"])


# ----------------------------------------------------------------------------- a synthetic MLflow store


def _add_run(client, exp_id, *, method, sparsity=0.0, seed=0, final=None, best=None, status="FINISHED", profile="t",
             commit="abc1234567", start=1_000, costs=None, density=None, history=None, failure=None,
             model="lenet300", dataset="mnist", tags=None, params=None, extra_metrics=None):
    from mlflow.entities import Metric, Param

    run_tags = {"method": method, "model": model, "dataset": dataset, "data_source": "official", "profile": profile,
                "git_commit": commit, "git_dirty": "false", **(tags or {})}
    run = client.create_run(exp_id, run_name=f"{method}-s{sparsity:g}-seed{seed}", tags=run_tags,
                            start_time=1_700_000_000_000 + start)
    rid = run.info.run_id
    params = {"sparsity": str(sparsity), "seed": str(seed), "trainer.epochs": "2", "model.width": "1.0",
              "pruner.name": method, "model.name": model, "data.name": dataset, **(params or {})}
    metrics = {}
    if final is not None:
        target = 0.0 if method == "dense" else sparsity
        metrics.update(final_test_acc=final, final_sparsity=target, final_sparsity_all=target * 0.99, layer_collapse=0.0)
    if best is not None:
        metrics["best_test_acc"] = best
    metrics.update(costs or {})
    metrics.update(extra_metrics or {})
    client.log_batch(rid, params=[Param(k, v) for k, v in params.items()],
                     metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
    for step, (acc, sp) in enumerate(history or [], start=1):
        client.log_batch(rid, metrics=[Metric("test_acc", acc, 0, step), Metric("sparsity", sp, 0, step)])
    if density is not None:
        client.log_text(rid, "layer,shape,weights,kept,density\n" + "".join(
            f"fc{i + 1},1x1,100,{int(d * 100)},{d:.6f}\n" for i, d in enumerate(density)), "layer_density.csv")
    if failure:
        client.set_tag(rid, "repro.failure", failure)
    if status != "RUNNING":
        client.set_terminated(rid, status=status)
    return rid


def make_store(mlflow_uri: str, tmp_path) -> dict:
    """The synthetic store the end-to-end tests read (also the input of the golden-file test)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("repro").experiment_id
    ids = {}
    for seed, acc in enumerate((0.980, 0.982, 0.978)):
        ids[f"dense{seed}"] = _add_run(client, exp, method="dense", seed=seed, final=acc, best=acc, start=100 + seed,
                                       costs={"cost_train_flops": 100.0})
    _add_run(client, exp, method="pmp", sparsity=0.95, seed=0, final=0.5, start=1)  # older duplicate of seed 0
    for seed, acc in enumerate((0.976, 0.977, 0.975)):
        ids[f"pmp{seed}"] = _add_run(client, exp, method="pmp", sparsity=0.95, seed=seed, final=acc, best=acc + 0.002,
                                     start=200 + seed, costs={"cost_train_flops": 60.0}, density=[0.03, 0.2, 0.6],
                                     history=[(0.9, 0.5), (0.95, 0.95), (acc, 0.95)])
    ids["snip0"] = _add_run(client, exp, method="snip", sparsity=0.95, seed=0, final=0.970, start=300,
                            commit="def9876543", density=[0.05, 0.1, 0.5])
    ids["failed"] = _add_run(client, exp, method="pmp", sparsity=0.98, seed=0, status="FAILED", start=400,
                             failure="RuntimeError: boom")
    ids["running"] = _add_run(client, exp, method="pmp", sparsity=0.98, seed=1, status="RUNNING", start=401)
    _add_run(client, exp, method="pmp", sparsity=0.95, seed=5, final=0.10, profile="other", start=500)
    _add_run(client, exp, method="report", final=0.0, start=600, tags={"kind": "report"})
    refs = tmp_path / "refs.csv"
    refs.write_text(REFS)
    return {"uri": mlflow_uri, "client": client, "exp": exp, "ids": ids, "refs": refs, "out": tmp_path / "out"}


@pytest.fixture
def store(mlflow_uri, tmp_path):
    return make_store(mlflow_uri, tmp_path)


def _report(store, *extra):
    return report.make_report(["--tracking-uri", store["uri"], "--profile", "t", "--references", str(store["refs"]),
                               "--out", str(store["out"]), *extra])


def test_report_end_to_end(store):
    rep = _report(store)
    g = rep.groups.set_index("method")

    # grouping: three groups of profile t, nothing from profile "other" or the earlier report run
    assert sorted(g.index) == ["dense", "pmp", "snip"]
    assert list(g.loc[["dense", "pmp", "snip"], "n"]) == [3, 3, 1]
    assert g.loc["dense", "target"] == 0.0 and g.loc["pmp", "target"] == 0.95

    # aggregation by hand: pmp 97.6, 97.7, 97.5 (the older duplicate of seed 0 is ignored)
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert g.loc["pmp", "final_mean"] == pytest.approx(97.6)
    assert g.loc["pmp", "final_std"] == pytest.approx(0.1)
    assert (g.loc["pmp", "final_lo"], g.loc["pmp", "final_hi"]) == (pytest.approx(97.6 - half), pytest.approx(97.6 + half))
    assert g.loc["pmp", "best_mean"] == pytest.approx(97.8)
    assert g.loc["pmp", "sparsity_mean"] == pytest.approx(95.0)
    assert "older duplicate" in "; ".join(g.loc["pmp", "notes"])

    # paired delta to dense: -0.4, -0.5, -0.3
    assert g.loc["pmp", "delta_kind"] == "paired"
    assert g.loc["pmp", "delta_mean"] == pytest.approx(-0.4)
    assert g.loc["pmp", "delta_hi"] == pytest.approx(-0.4 + half)
    assert g.loc["pmp", "cost_train_flops_ratio"] == pytest.approx(0.6)
    assert g.loc["dense", "cost_train_flops_ratio"] == pytest.approx(1.0)

    # references and verdicts
    c = rep.claims
    by_id = {i: c[(c["id"] == i) & (c["scope"] == "")].iloc[0] for i in c["id"].unique()}
    assert by_id["r_ok"]["verdict"] == "reproduced"
    assert by_id["r_ok"]["delta_pp"] == pytest.approx(0.0)
    assert by_id["r_not"]["verdict"] == "not reproduced"
    assert by_id["r_inc"]["verdict"] == "inconclusive"
    assert by_id["r_single"]["verdict"] == "inconclusive" and by_id["r_single"]["n"] == 1
    assert by_id["r_none"]["verdict"] == "no runs"
    assert by_id["r_best"]["metric_used"] == "best" and by_id["r_best"]["ours"] == pytest.approx(97.8)
    best_notes = "; ".join(by_id["r_best"]["notes"])
    assert "epochs: reference 160, ours 2" in best_notes and "over all parameters" in best_notes
    assert "architecture: approx" in best_notes and "a note" in best_notes
    assert by_id["r_delta"]["verdict"] == "not reproduced" and by_id["r_delta"]["pairing"] == "paired"
    assert by_id["r_delta"]["ours"] == pytest.approx(-0.4)
    overall = c[(c["id"] == "r_delta") & (c["scope"] == "overall")].iloc[0]
    assert overall["verdict"] == "not reproduced"
    assert "r_ok 97.6 (reproduced)" in g.loc["pmp", "references"]

    # failed and unfinished runs: out of the numbers, listed under the table
    assert set(rep.left_out["run_id"]) == {store["ids"]["failed"], store["ids"]["running"]}
    assert set(rep.left_out["reason"]) == {"FAILED", "RUNNING"}
    md = (store["out"] / "table.md").read_text()
    assert "RuntimeError: boom" in md and "2 failed or unfinished run(s)" in md
    for key in ("**command**", "**report commit**", "**date**", "**machine**", "**epochs used** (trainer.epochs): 2"):
        assert key in md
    assert "runs come from different commits" in md
    assert "`r_none`" in md  # listed as a reference without runs

    # files: tables and the three kinds of plot
    names = {p.name for p in rep.files}
    assert {"table.md", "table.csv", "claims.csv"} <= names
    for prefix in report.PLOT_PREFIXES:
        assert any(n.startswith(prefix) and n.endswith(".png") for n in names), prefix
    assert all(p.is_file() and p.stat().st_size > 0 for p in rep.files)
    table = pd.read_csv(store["out"] / "table.csv")
    assert len(table) == 3 and {"final_mean", "final_lo", "best_mean", "commits", "notes"} <= set(table.columns)
    assert any(n.startswith("layer_density_") for n in names)

    # the report run: tagged kind=report, with the files as artifacts
    client = store["client"]
    run = client.get_run(rep.report_run_id)
    assert run.data.tags["kind"] == "report" and run.info.status == "FINISHED"
    # in its own experiment: the training runs' table and charts hold training runs only
    assert client.get_experiment(run.info.experiment_id).name == client.get_experiment(store["exp"]).name + "-reports"
    logged = {a.path for a in client.list_artifacts(rep.report_run_id)}
    assert {"table.md", "table.csv", "claims.csv"} <= logged and any(p.endswith(".png") for p in logged)
    assert run.data.metrics["claims_reproduced"] >= 1


def test_report_runs_are_not_counted_again(store):
    first = _report(store, "--no-plots")
    second = _report(store, "--no-plots", "--no-log")
    assert first.report_run_id is not None and second.report_run_id is None
    assert list(first.groups["n"]) == list(second.groups["n"])
    assert len(second.left_out) == 2


def test_unknown_profile_exits_with_a_message(mlflow_uri, tmp_path):
    with pytest.raises(SystemExit, match="no runs with profile 'nope'"):
        report.make_report(["--tracking-uri", mlflow_uri, "--profile", "nope", "--out", str(tmp_path)])


def test_shipped_references_are_well_formed():
    refs = report.load_references(report.DEFAULT_REFERENCES)
    assert refs["id"].is_unique
    assert {"pmp_resnet18_729", "pmp_vgglike_97", "pmp_vgg19_9797", "pmp_resnet18_dense_70_85", "snip_vgglike_97",
            "snip_lenet300_95", "snip_lenet5_98", "grasp_vgg19_90", "grasp_vgg19_95", "grasp_vgg19_98",
            "lth_resnet18_905"} <= set(refs["id"])
    assert set(refs["kind"]) <= {"literature", "claim_accuracy", "claim_delta_vs_dense"}
    assert set(refs["direction"]) <= {"at_least", "two_sided"}
    assert set(refs["metric"]) <= {"final", "best_epoch", "best_checkpoint", "unknown"}
    assert set(refs["sparsity_denominator"]) <= {"prunable", "all", "unknown"}
    assert set(refs["our_model"]) <= {"lenet300", "lenet5", "vgg_like", "vgg19", "resnet18", "resnet20"}
    assert refs["verified"].notna().all()
    claims = refs.set_index("id")
    assert claims.loc["pmp_resnet18_729", "accuracy"] == 95.12 and claims.loc["pmp_resnet18_729", "sparsity"] == 0.729
    assert claims.loc["pmp_vgg19_9797", "accuracy"] == 93.44 and claims.loc["grasp_vgg19_98", "accuracy"] == 92.19
    assert claims.loc["lth_resnet18_905", "our_model"] == "resnet20"


def test_a_run_reused_by_another_profile_is_in_both_reports(store):
    """Run identity leaves the profile out: a sweep of profile "u" skips t's FINISHED runs, and
    joins them (and an LTH chain's nested target runs) to "u" so that u's report finds them."""
    from repro.tracking import Tracker

    client, exp = store["client"], store["exp"]
    chain = _add_run(client, exp, method="lth", start=700, tags={"kind": "chain"})
    target = _add_run(client, exp, method="lth", sparsity=0.9, final=0.97, start=701,
                      tags={"mlflow.parentRunId": chain})
    assert report.fetch_runs(store["uri"], "repro", "u").empty
    tracker = Tracker(store["uri"], "repro")
    tracker.join_profile(store["ids"]["pmp0"], "u")
    tracker.join_profile(chain, "u")
    joined = report.fetch_runs(store["uri"], "repro", "u")
    assert sorted(joined["run_id"]) == sorted([store["ids"]["pmp0"], target])  # the chain itself is never counted
    assert len(report.fetch_runs(store["uri"], "repro", "t")) == len(report.fetch_runs(store["uri"], "repro", None)) - 1


def test_layer_density_legend_tells_apart_groups_of_one_method():
    """Two PMP groups at one target (sensitivity rows) got the same legend entry; now each names its group."""
    from repro.report.plots import density_label

    assert density_label("pmp", 0, "9eead1516bb6432a", twin=False) == "pmp (seed 0)"
    a = density_label("pmp", 0, "9eead1516bb6432a", twin=True)
    b = density_label("pmp", 0, "65a9e53542560a45", twin=True)
    assert (a, b) == ("pmp (seed 0, group 9eead151)", "pmp (seed 0, group 65a9e535)")
    assert density_label("pmp", 1, "", twin=True) == "pmp (seed 1, group (none))"


def test_the_layer_density_plot_names_each_group_of_a_twice_run_method(tmp_path, monkeypatch):
    """Through the plot: two PMP groups and one GMP group at one target; the PMP lines carry their
    groups, the GMP line its plain name."""
    from pathlib import Path

    from repro.report import plots

    class Client:
        def download_artifacts(self, run_id, path, dst):
            out = Path(dst) / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("layer,shape,weights,kept,density\nfc1,2x2,4,2,0.5\nfc2,2x2,4,1,0.25\n")
            return str(out)

    base = {"model": "lenet300", "dataset": "mnist", "data_source": "official", "epochs": 8, "width": 1.0, "target": 0.9}
    groups = pd.DataFrame([{**base, "method": "pmp", "run_ids": "a", "group": "aaaaaaaa1111"},
                           {**base, "method": "pmp", "run_ids": "b", "group": "bbbbbbbb2222"},
                           {**base, "method": "gmp", "run_ids": "c", "group": "cccccccc3333"}])
    runs = pd.DataFrame([{"run_id": r, "seed": 0} for r in "abc"])
    labels = []
    real = plots.density_label
    monkeypatch.setattr(plots, "density_label", lambda *a, **k: labels.append(real(*a, **k)) or labels[-1])
    (path,) = plots.plot_layer_density(groups, runs, Client(), tmp_path, ["dense"])
    assert path.is_file()
    assert labels == ["gmp (seed 0)", "pmp (seed 0, group aaaaaaaa)", "pmp (seed 0, group bbbbbbbb)"]

