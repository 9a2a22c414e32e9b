"""Verdicts that decide (issue 14): >= 3 seeds, TOST, seeds needed, claim_relative, mask updates, the paper table.

Every expected value is computed by hand in the comments (t quantiles from printed tables,
to the digits shown) or with numpy/scipy directly, never with the function under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from repro import records, report
from repro.report.stats import Stats
from tests.test_report import _add_run, _report, _runs, make_store

NAN = float("nan")
# Student-t quantiles: t_{0.975} (two-sided 95%) and t_{0.95} (two-sided 90% / one-sided 95%) by degrees of freedom
T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445}
T95 = {2: 2.919986, 3: 2.353363}


def _stats(n: int, mean: float, std: float, t: float, kind: str = "runs") -> Stats:
    half = t * std / math.sqrt(n)
    return Stats(n, mean, std, mean - half, mean + half, kind)


# ----------------------------------------------------------------------------- at least 3 seeds


def test_two_seeds_are_inconclusive_however_clear_the_interval():
    # two seeds at 97.6 +- 0.1 against "at least 90": half-width 12.706 * 0.1 / sqrt(2) = 0.898, interval
    # [96.70, 98.50] far above 89.5, yet two seeds decide nothing
    two = _stats(2, 97.6, 0.1, T975[1])
    d = report.decide_interval(two, 90.0, 0.5, "at_least")
    assert (d.verdict, d.reason) == ("inconclusive", "n=2 < 3 seeds")
    assert d.seeds_needed == 3  # n = 2 would already clear 89.5; the floor is 3 seeds
    three = _stats(3, 97.6, 0.1, T975[2])
    assert report.decide_interval(three, 90.0, 0.5, "at_least").verdict == "reproduced"
    # the same floor for the equivalence test and the relative claim
    assert report.decide_equivalence(_stats(2, 0.0, 0.01, T975[1], "paired"), 0.0, 0.1).reason == "n=2 < 3 seeds"
    assert report.decide_relative(Stats(2, 5.0, 0.1, NAN, NAN, "paired"), 0.5).reason == "n=2 < 3 seeds"
    one = report.decide_interval(Stats(1, 97.0, NAN, NAN, NAN), 97.0, 0.5, "two_sided")
    assert (one.verdict, one.reason, one.seeds_needed) == ("inconclusive", "n=1 < 3 seeds", "")


@pytest.mark.parametrize(("mean", "expected"), [
    (97.6, "reproduced"),      # 3 seeds, std 0.1: [97.35, 97.85], lower bound >= 97.0 - 0.5
    (96.0, "not reproduced"),  # [95.75, 96.25], upper bound < 96.5
    (96.6, "inconclusive"),    # [96.35, 96.85] contains 96.5
])
def test_at_least_keeps_the_interval_rule(mean, expected):
    s = _stats(3, mean, 0.1, T975[2])  # half-width 4.302653 * 0.1 / sqrt(3) = 0.248
    assert report.decide_interval(s, 97.0, 0.5, "at_least").verdict == expected


# ----------------------------------------------------------------------------- equivalence (TOST)


def test_equivalence_inside_uses_the_90_percent_interval():
    # n=4, mean 0.03, std 0.05: 90% half-width 2.353363 * 0.05 / 2 = 0.0588 -> [-0.029, 0.089] inside (-0.1, 0.1);
    # the 95% interval (half 3.182446 * 0.025 = 0.0796 -> hi 0.1096) is not: a 95% rule would be inconclusive
    s = _stats(4, 0.03, 0.05, T975[3], "paired")
    d = report.decide_equivalence(s, 0.0, 0.1)
    assert d.verdict == "reproduced" and "[-0.03, 0.09]" in d.reason and d.seeds_needed == ""


def test_equivalence_outside_uses_the_95_percent_interval():
    # n=3, mean -0.4, std 0.1: 95% half-width 4.302653 * 0.1 / sqrt(3) = 0.2484 -> [-0.648, -0.152], all below -0.1
    d = report.decide_equivalence(_stats(3, -0.4, 0.1, T975[2], "paired"), 0.0, 0.1)
    assert d.verdict == "not reproduced" and "[-0.65, -0.15]" in d.reason
    # above the band too: mean +0.4 -> [0.152, 0.648] > 0.1
    assert report.decide_equivalence(_stats(3, 0.4, 0.1, T975[2], "paired"), 0.0, 0.1).verdict == "not reproduced"


def test_equivalence_straddling_is_inconclusive_with_seeds_needed():
    from scipy.stats import t

    # n=4, mean 0.08, std 0.05: 90% [0.0212, 0.1388] crosses 0.1, 95% [0.0004, 0.1596] is not wholly outside
    d = report.decide_equivalence(_stats(4, 0.08, 0.05, T975[3], "paired"), 0.0, 0.1)
    assert d.verdict == "inconclusive"
    # the mean is inside the band: equivalence would need the 90% half-width below 0.1 - 0.08 = 0.02
    expected = next(n for n in range(2, 1001) if t.ppf(0.95, n - 1) * 0.05 / math.sqrt(n) < 0.02)
    assert expected == 19  # n=18: 1.7396 * 0.05 / 4.243 = 0.0205; n=19: 1.7341 * 0.05 / 4.359 = 0.0199
    assert d.seeds_needed == expected
    # a mean on the edge of the band: no number of seeds decides it
    assert report.decide_equivalence(_stats(5, 0.1, 0.05, T975[4], "paired"), 0.0, 0.1).seeds_needed == "no number would"


def test_equivalence_needs_paired_differences():
    d = report.decide_equivalence(Stats(3, 0.0, 0.01, -0.01, 0.01, "unpaired"), 0.0, 0.1)
    assert d.verdict == "inconclusive" and "seed-paired" in d.reason


# ----------------------------------------------------------------------------- seeds needed


def test_seeds_needed_by_hand():
    # std 0.2, mean 0.3 above the boundary, 95%: t(n-1) * 0.2 / sqrt(n) < 0.3
    #   n=3: 4.303 * 0.2 / 1.732 = 0.497; n=4: 3.182 * 0.2 / 2 = 0.318; n=5: 2.776 * 0.2 / 2.236 = 0.248 -> 5
    assert report.seeds_needed(0.3, 0.2, [0.0], 0.95) == 5
    assert report.seeds_needed(-0.3, 0.2, [0.0], 0.95) == 5  # below the boundary: the same distance
    # the same through the at_least rule: three seeds at 97.3 against 97.5 - 0.5 = 97.0, interval [96.80, 97.80]
    d = report.decide_interval(_stats(3, 97.3, 0.2, T975[2]), 97.5, 0.5, "at_least")
    assert (d.verdict, d.seeds_needed) == ("inconclusive", 5)
    # two_sided: only the nearest edge matters (mean 97.3 in [96.5, 97.5]: 0.2 from the upper edge)
    #   0.2 / 0.2 = 1: n=7: 2.447 / 2.646 = 0.925 < 1, n=6: 2.571 / 2.449 = 1.050 -> 7
    assert report.seeds_needed(97.3, 0.2, [96.5, 97.5], 0.95) == 7
    assert report.seeds_needed(0.0, 0.2, [0.0], 0.95) == "no number would"      # on the boundary
    assert report.seeds_needed(1e-12, 0.0, [0.0], 0.95) == "no number would"    # on it up to rounding (std 0)
    assert report.seeds_needed(1e-4, 1.0, [0.0], 0.95) == "no number would"     # ~ (1.96 / 1e-4)^2 seeds: > 1000
    assert report.seeds_needed(5.0, 0.1, [0.0], 0.95) == 3                      # n=2 would do: the floor is 3
    assert report.seeds_needed(5.0, NAN, [0.0], 0.95) == ""                     # one seed: no spread


# ----------------------------------------------------------------------------- claim_relative


@pytest.mark.parametrize(("mean", "std", "expected"), [
    # n=3, one-sided 95% bounds mean -+ 2.919986 * std / sqrt(3), margin 0.5
    (0.0, 0.3, "inconclusive"),      # half 0.5058: [-0.506, 0.506] contains -0.5, by 0.006
    (0.1, 0.3, "reproduced"),        # [-0.406, 0.606]: lower -0.406 > -0.5
    (-1.2, 0.3, "not reproduced"),   # [-1.706, -0.694]: upper -0.694 < -0.5
    (-0.3, 0.3, "inconclusive"),     # [-0.806, 0.206]: contains -0.5 (upper below +0.5: a sign slip shows)
])
def test_relative_rule_by_hand(mean, std, expected):
    s = Stats(3, mean, std, NAN, NAN, "paired")
    assert report.decide_relative(s, 0.5).verdict == expected
    lo, hi = report.one_sided_bounds(s)
    half = T95[2] * std / math.sqrt(3)
    assert (lo, hi) == (pytest.approx(mean - half, abs=1e-5), pytest.approx(mean + half, abs=1e-5))


# ----------------------------------------------------------------------------- claim_relative on a store


def _relative_store(client, exp) -> None:
    """PMP at 90% beside snip, LTH (nested target runs of a chain), GMP (2 mask updates), dense, and two that
    must not be compared: grasp at another learning rate, snip at another target."""
    recipe = {records.OPTIM_NAME_PARAM: "sgd", records.OPTIM_LR_PARAM: "0.1", records.BATCH_SIZE_PARAM: "128"}
    chain = _add_run(client, exp, method="lth", start=1, tags={"kind": "chain"})
    accs = {  # final accuracy (fraction) per seed 0, 1, 2
        ("pmp", 0.9): (0.970, 0.972, 0.974), ("snip", 0.9): (0.969, 0.968, 0.973), ("lth", 0.9): (0.980, 0.983, 0.982),
        ("gmp", 0.9): (0.971, 0.967, 0.976), ("dense", 0.0): (0.981, 0.980, 0.982), ("snip", 0.5): (0.99, 0.99, 0.99),
        ("grasp", 0.9): (0.90, 0.90, 0.90),
    }
    for i, ((method, sparsity), finals) in enumerate(accs.items()):
        for seed, acc in enumerate(finals):
            params = {**recipe, records.OPTIM_LR_PARAM: "0.01"} if method == "grasp" else recipe
            extra = {records.MASK_UPDATES: {"pmp": 10, "gmp": 2}.get(method, 1)}
            cost = {"pmp": 60.0, "lth": 300.0}.get(method)
            _add_run(client, exp, method=method, sparsity=sparsity, seed=seed, final=acc, start=10 * i + seed + 2,
                     params=params, extra_metrics=extra, costs={records.COST_TRAIN_FLOPS: cost} if cost else None,
                     tags={"mlflow.parentRunId": chain} if method == "lth" else None)


def test_relative_claims_paired_by_seed(mlflow_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    _relative_store(client, client.get_experiment_by_name("repro").experiment_id)
    rep = report.make_report(["--tracking-uri", mlflow_uri, "--profile", "t", "--references", str(tmp_path / "no.csv"),
                              "--out", str(tmp_path / "out"), "--no-plots", "--no-log"])
    rel = rep.relative.set_index("other")
    assert sorted(rel.index) == ["dense", "gmp", "lth", "snip"]  # not grasp (lr 0.01), not snip at 50%
    assert (rel["n"] == 3).all() and (rel["target"] == 0.9).all()

    # snip: diffs 0.1, 0.4, 0.1 -> mean 0.2, std sqrt(0.06 / 2) = 0.17321, one-sided 95% half-width
    # 2.919986 * 0.17321 / sqrt(3) = 0.29200: lower bound -0.092 > -0.5 -> reproduced
    snip = rel.loc["snip"]
    assert snip["diff_mean"] == pytest.approx(0.2, abs=1e-9) and snip["diff_std"] == pytest.approx(math.sqrt(0.03))
    assert snip["lower"] == pytest.approx(0.2 - T95[2] * math.sqrt(0.03) / math.sqrt(3), abs=1e-5)
    assert snip["verdict"] == "reproduced" and snip["seeds_needed"] == ""

    # lth: diffs -1.0, -1.1, -0.8 -> mean -0.96667, std sqrt(0.046667 / 2) = 0.15275, half 0.25752:
    # upper bound -0.70915 < -0.5 -> not reproduced; cost 300 / 60 = 5
    lth = rel.loc["lth"]
    assert lth["upper"] == pytest.approx(-0.96667 + 0.25752, abs=1e-4)
    assert lth["verdict"] == "not reproduced" and lth["cost_ratio"] == pytest.approx(5.0)
    assert "cost: lth trains 5.00× PMP's cost_train_flops" in lth["notes"]

    # gmp: diffs -0.1, 0.5, -0.2 -> mean 0.06667, std sqrt(0.28667 / 2) = 0.37859, half 0.63824: bounds
    # [-0.5716, 0.7049] contain -0.5 -> inconclusive; seeds needed: t_.95(n-1) / sqrt(n) < 0.56667 / 0.37859 = 1.4968
    # (n=3: 2.920 / 1.732 = 1.686; n=4: 2.353 / 2 = 1.177) -> 4
    gmp = rel.loc["gmp"]
    assert gmp["verdict"] == "inconclusive" and gmp["seeds_needed"] == 4
    assert "gmp: fewer than 3 mask updates: one-shot pruning in disguise" in gmp["notes"]
    assert np.isnan(rel.loc["snip", "cost_ratio"])  # the cost ratio is for LTH only

    written = pd.read_csv(rep.out / "relative.csv")
    assert len(written) == 4 and {"verdict", "seeds_needed", "cost_ratio", "lower", "upper"} <= set(written.columns)
    md = (rep.out / "table.md").read_text()
    assert "## PMP against the others, paired by seed" in md and "lower bound > −0.5" in md


def test_relative_claim_with_fewer_than_three_pairs(mlflow_uri, tmp_path):
    store = make_store(mlflow_uri, tmp_path)
    rel = _report(store, "--no-plots", "--no-log").relative.set_index("other")
    assert rel.loc["snip", "n"] == 1 and rel.loc["snip", "reason"] == "n=1 < 3 seeds"
    assert "seeds without a partner left out: pmp 1 2" in rel.loc["snip", "notes"]


# ----------------------------------------------------------------------------- mask updates


def test_fewer_than_three_mask_updates_is_flagged_for_pmp_and_gmp_only():
    rows = []
    for method, target, updates in (("pmp", 0.9, (1.0, 3.0)),     # mean 2 < 3: flagged
                                    ("gmp", 0.9, (3.0, 3.0)),     # mean exactly 3: not
                                    ("snip", 0.9, (1.0, 1.0)),    # one-shot by design: not
                                    ("pmp", 0.5, (NAN, NAN))):    # not logged: no note
        rows += [{"model": "lenet300", "dataset": "mnist", "method": method, "target": target, "seed": s,
                  "final_acc": 97.0, "mask_updates": u} for s, u in enumerate(updates)]
    groups = report.summarize(_runs(rows)).set_index(["method", "target"])
    note = "fewer than 3 mask updates: one-shot pruning in disguise"
    assert note in groups.loc[("pmp", 0.9), "notes"] and groups.loc[("pmp", 0.9), "mask_updates_mean"] == 2.0
    assert note not in groups.loc[("gmp", 0.9), "notes"]
    assert note not in groups.loc[("snip", 0.9), "notes"]
    assert note not in groups.loc[("pmp", 0.5), "notes"]


# ----------------------------------------------------------------------------- the paper table


def test_cell_text():
    assert report.cell_text(97.6, 0.1, 3) == "97.60 ± 0.10 (3)"
    assert report.cell_text(97.0, NAN, 1) == "97.00 (1)"
    assert report.cell_text(NAN, NAN, 0) == ""
    assert report.ref_text(98.4) == "98.4\\*"


def test_block_table_stars_references_in_their_cells(tmp_path):
    rows = [{"model": "lenet300", "dataset": "mnist", "method": m, "target": t, "seed": s, "final_acc": a + 0.2 * s}
            for m, t, a in (("dense", 0.0, 98.0), ("pmp", 0.95, 97.0), ("pmp", 0.98, 96.0)) for s in range(3)]
    groups = report.summarize(_runs(rows))
    refs_csv = tmp_path / "refs.csv"
    refs_csv.write_text(",".join(report.REF_COLUMNS) + """
r_d,literature,src,c,dense,LeNet,lenet300,yes,mnist,0.0,,all,98.3,best_checkpoint,,two_sided,,primary,,
r_s,literature,src,c,snip,LeNet,lenet300,yes,mnist,0.95,,all,98.4,best_checkpoint,,two_sided,,primary,,
r_far,literature,src,c,snip,LeNet,lenet300,yes,mnist,0.99,,all,97.0,final,,two_sided,,primary,,
r_other,literature,src,c,snip,VGG,vgg19,yes,cifar10,0.95,,all,92.0,final,,two_sided,,primary,,
""")
    header, table, notes = report.block_table(groups, report.load_references(refs_csv), ("dense",))
    assert header == ["method", "0% (dense)", "95%", "98%"]
    # dense 98.0, 98.2, 98.4: mean 98.2, std 0.2; pmp at 95%: 97.0, 97.2, 97.4 -> 97.2 +- 0.2
    assert table[0] == ["dense", "98.20 ± 0.20 (3); 98.3\\*", "", ""]
    assert table[1] == ["pmp", "", "97.20 ± 0.20 (3)", "96.20 ± 0.20 (3)"]
    assert table[2] == ["snip", "", "98.4\\*", ""]  # a method only the literature ran: its own row
    assert any("`r_s`" in n and "best_checkpoint" in n for n in notes)
    assert any("not run here" in n and "`r_far`" in n for n in notes)
    assert not any("r_other" in n for n in notes)  # another model's reference stays out of this block


def test_block_table_leaves_out_a_reference_of_another_recipe(tmp_path):
    """SNIP's dense 98.3 (SGD) starred beside LTH's Adam-trained dense was another recipe's number."""
    rows = [{"model": "lenet300", "dataset": "mnist", "method": m, "target": t, "seed": s, "final_acc": 98.0}
            for m, t in (("dense", 0.0), ("pmp", 0.95)) for s in range(3)]
    groups = report.summarize(_runs(rows)).assign(_recipe="optim.name=adam optim.lr=0.0012")
    refs_csv = tmp_path / "refs.csv"
    refs_csv.write_text(",".join(report.REF_COLUMNS) + """
r_sgd,literature,src,c,dense,LeNet,lenet300,yes,mnist,0.0,,all,98.3,best_checkpoint,,two_sided,,primary,,,params,optim.name=sgd
r_sgd95,literature,src,c,snip,LeNet,lenet300,yes,mnist,0.95,,all,98.4,best_checkpoint,,two_sided,,primary,,,params,optim.name=sgd
r_adam,literature,src,c,pmp,LeNet,lenet300,yes,mnist,0.95,,all,97.5,final,,two_sided,,primary,,,params,optim.name=adam
r_any,literature,src,c,dense,LeNet,lenet300,yes,mnist,0.0,,all,98.1,final,,two_sided,,primary,,,params,
""")
    header, table, notes = report.block_table(groups, report.load_references(refs_csv), ("dense",))
    assert table == [["dense", "98.00 ± 0.00 (3); 98.1\\*", ""], ["pmp", "", "98.00 ± 0.00 (3); 97.5\\*"]]
    assert not any("r_sgd" in n for n in notes)  # neither starred nor listed as "not run here"
    assert any("`r_adam`" in n for n in notes) and any("`r_any`" in n for n in notes)


def test_paper_table_opens_table_md(mlflow_uri, tmp_path):
    store = make_store(mlflow_uri, tmp_path)
    md = (_report(store, "--no-plots", "--no-log").out / "table.md").read_text()
    assert md.index("## The table") < md.index("## Results per group") < md.index("## Claims")
    assert "| pmp |  | 97.60 ± 0.10 (3); 97.6\\*; 99.5\\*; 97.2\\*; 97.9\\* |" in md
    assert "\\* pmp at 95%: 97.6 is `r_ok`" in md


def test_lths_weights_denominator_and_recipe_pick_the_runs_a_reference_speaks_about():
    """LTH's 72.9% counts every conv and linear weight; a chain that keeps shortcuts dense has
    target 0.737856 over its prunable set but measures 72.91% over all weights: it matches.
    The recipe column keeps LTH's LR-0.03 number away from runs at another LR."""
    from repro.report.claims import DEFAULT_REFERENCES, _matches, load_references

    refs = load_references(DEFAULT_REFERENCES)
    ref = refs[refs["id"] == "lth_resnet18_905"].iloc[0]
    base = {"model": "resnet20", "dataset": "cifar10", "method": "lth", "target": 0.737856, "sparsity_weights_mean": 72.91}
    groups = pd.DataFrame([
        {**base, "_recipe": "optim.name=sgd optim.lr=0.03 trainer.batch_size=128 data.val_size=5000"},
        {**base, "_recipe": "optim.name=sgd optim.lr=0.01 trainer.batch_size=128 data.val_size=5000"},
        {**base, "sparsity_weights_mean": 80.0, "_recipe": "optim.name=sgd optim.lr=0.03 trainer.batch_size=128"},
    ])
    picked = _matches(ref, groups)
    assert list(picked.index) == [0]


def test_a_recipe_reference_with_no_group_of_its_model_matches_nothing_and_keeps_the_columns():
    """An empty selection must stay a frame with the groups' columns (boolean indexing by an
    empty object Series would select columns instead: a KeyError on a real store)."""
    from repro.report.claims import DEFAULT_REFERENCES, _matches, load_references

    refs = load_references(DEFAULT_REFERENCES)
    ref = refs[refs["id"] == "lth_resnet18_905"].iloc[0]
    groups = pd.DataFrame([{"model": "lenet300", "dataset": "mnist", "method": "pmp", "target": 0.95,
                            "sparsity_weights_mean": 95.0, "_recipe": "optim.lr=0.1"}])
    picked = _matches(ref, groups)
    assert picked.empty and "target" in picked.columns


def test_a_group_without_a_dense_of_its_length_is_compared_with_the_dense_of_its_own_recipe():
    """PMP trained 220 epochs under LTH's Adam recipe has no 220-epoch dense: its delta is taken
    against LTH's 55-epoch Adam dense, not the first dense found (SNIP's SGD one)."""
    from repro.report.aggregate import _dense_for

    base = {"model": "lenet300", "dataset": "mnist", "data_source": "official", "width": 1.0, "group": ""}
    groups = pd.DataFrame([{**base, "method": "dense", "epochs": 50, "_recipe": "optim.name=sgd"},
                           {**base, "method": "dense", "epochs": 55, "_recipe": "optim.name=adam"},
                           {**base, "method": "pmp", "epochs": 220, "_recipe": "optim.name=adam"}])
    dense, note = _dense_for(groups, groups.iloc[2], ("dense",))
    assert (dense["epochs"], dense["_recipe"]) == (55, "optim.name=adam")
    assert note == "dense baseline trained 55 epochs at width 1"

