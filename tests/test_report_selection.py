"""Best-epoch selection, SNIP's max over checkpoints and the cost-matched LTH rows (issue 14).

- the loop says how it chose the best epoch (``best_on_val``) and logs ``max_test_acc``;
- the report reads the selection from that metric, or for older runs from their params (a
  validation split means the best validation epoch), and derives ``max_acc`` from the
  test-accuracy history of runs that did not log it;
- a ``best_checkpoint`` reference is compared with the max over checkpoints (test-selected);
- a PMP group trained as many epochs as an LTH chain spent is paired with it ("cost-matched").

Every expected value is worked out by hand in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from repro import records, report
from repro.engine.evaluation import headline
from repro.report.reading import SELECTED_ON_TEST, SELECTED_ON_VAL, best_selection, fill_max_acc, max_from_history
from tests.test_report import _runs

T975_2 = 4.302653  # Student-t 97.5% quantile, 2 degrees of freedom (printed tables)


# ----------------------------------------------------------------------------- the loop's records


def _h(epoch: int, final: float, test: float, val: float | None = None, cycle: int = 0) -> dict:
    h = {records.EPOCH: epoch, records.CYCLE: cycle, records.MASK_FINAL: final, records.TEST_ACC: test,
         records.TEST_LOSS: 1 - test}
    if val is not None:
        h[records.VAL_ACC] = val
    return h


def test_headline_flags_the_selection_and_takes_the_max_over_final_mask_epochs():
    # epoch 1 (denser mask, test 0.9) counts for neither; of epochs 2-4 the best validation epoch is 3
    # (val 0.7, test 0.55) and the highest test accuracy 0.8 (epoch 4)
    with_val = headline([_h(1, 0.0, 0.9, 0.95), _h(2, 1.0, 0.6, 0.5), _h(3, 1.0, 0.55, 0.7), _h(4, 1.0, 0.8, 0.6)], 0)
    assert with_val[records.BEST_ON_VAL] == 1.0 and with_val[records.BEST_TEST_ACC] == 0.55
    assert with_val[records.MAX_TEST_ACC] == 0.8
    # no validation split: the best epoch is chosen on the test set itself (0.8), and says so
    no_val = headline([_h(1, 0.0, 0.9), _h(2, 1.0, 0.6), _h(3, 1.0, 0.8), _h(4, 1.0, 0.7)], 0)
    assert no_val[records.BEST_ON_VAL] == 0.0 and no_val[records.BEST_TEST_ACC] == 0.8
    assert no_val[records.MAX_TEST_ACC] == 0.8


# ----------------------------------------------------------------------------- reading the selection


def test_best_selection_from_the_metric_and_for_older_runs_from_the_validation_split():
    m, p = f"metrics.{records.BEST_ON_VAL}", f"params.{records.VAL_SIZE_PARAM}"
    raw = pd.DataFrame([
        {m: np.nan, p: "5000"},  # old run with a validation split: the loop chose on it
        {m: np.nan, p: "0"},     # old run without one: test-selected
        {m: np.nan, p: None},    # old run that never logged data.val_size: test-selected
        {m: 0.0, p: "5000"},     # new run: its own flag wins over the params
        {m: 1.0, p: None},
    ])
    assert list(best_selection(raw)) == [SELECTED_ON_VAL, SELECTED_ON_TEST, SELECTED_ON_TEST, SELECTED_ON_TEST,
                                         SELECTED_ON_VAL]


# ----------------------------------------------------------------------------- max over checkpoints


def test_max_from_a_hand_written_history_counts_the_last_cycle_on_its_final_mask():
    # steps 1-2: cycle 0 (0.95 would be the max of everything); step 3: cycle 1, mask not final yet (0.93);
    # steps 4-5: cycle 1 on the final mask: max(0.91, 0.92) = 0.92
    acc = [(1, 0.95), (2, 0.94), (3, 0.93), (4, 0.91), (5, 0.92)]
    cycle = [(1, 0.0), (2, 0.0), (3, 1.0), (4, 1.0), (5, 1.0)]
    final = [(1, 0.0), (2, 1.0), (3, 0.0), (4, 1.0), (5, 1.0)]
    assert max_from_history(acc, cycle, final) == 0.92
    assert max_from_history(acc) == 0.95  # a history with neither flag: every evaluated epoch
    assert math.isnan(max_from_history([]))


def test_fill_max_acc_reads_the_history_only_of_runs_that_lack_the_metric():
    runs = pd.DataFrame({"run_id": ["old", "new", "none"], "max_acc": [np.nan, 97.0, np.nan]})
    # runs without max_test_acc were logged before the namespaces: flat test_acc, fractions
    histories = {("old", "test_acc"): [(1, 0.5), (2, 0.981), (3, 0.97)],
                 ("new", "test_acc"): [(1, 0.99)]}  # would give 99.0 if it were read
    asked = []

    def history(run_id, key):
        asked.append(run_id)
        return histories.get((run_id, key), [])

    out = fill_max_acc(runs, history)
    assert out["max_acc"].tolist()[:2] == pytest.approx([98.1, 97.0]) and math.isnan(out.at[2, "max_acc"])
    assert "new" not in asked


# ----------------------------------------------------------------------------- claims pick the reference's metric


def _refs(tmp_path, *rows: str):
    path = tmp_path / "refs.csv"
    path.write_text(",".join(report.REF_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return report.load_references(path)


def test_a_best_checkpoint_reference_is_compared_with_the_max_over_checkpoints(tmp_path):
    # three SNIP runs with a validation split: best (at the best validation epoch) 97.0, 97.2, 97.4;
    # max over checkpoints 98.0, 98.2, 98.4 -> mean 98.2, std 0.2, 95% half-width 4.302653 * 0.2 / sqrt(3)
    runs = _runs([{"model": "lenet300", "dataset": "mnist", "method": "snip", "target": 0.95, "seed": s,
                   "final_acc": 96.0 + 0.2 * s, "best_acc": 97.0 + 0.2 * s, "max_acc": 98.0 + 0.2 * s,
                   "best_selection": SELECTED_ON_VAL, "final_sparsity": 0.95} for s in range(3)])
    groups = report.summarize(runs)
    refs = _refs(tmp_path,
                 "ckpt,literature,s,s,snip,LeNet-300-100,lenet300,yes,mnist,0.95,,prunable,98.2,best_checkpoint,,"
                 "two_sided,,x,,",
                 "epoch,literature,s,s,snip,LeNet-300-100,lenet300,yes,mnist,0.95,,prunable,97.2,best_epoch,,"
                 "two_sided,,x,,")
    c = report.compare(refs, groups).set_index("id")
    assert c.loc["ckpt", "metric_used"] == "max" and c.loc["ckpt", "ours"] == pytest.approx(98.2)
    assert c.loc["ckpt", "ours_hi"] - c.loc["ckpt", "ours"] == pytest.approx(T975_2 * 0.2 / math.sqrt(3))
    assert c.loc["ckpt", "best_selection"] == SELECTED_ON_TEST
    assert "both max test accuracy over kept checkpoints (test-selected)" in c.loc["ckpt", "notes"]
    assert c.loc["epoch", "metric_used"] == "best" and c.loc["epoch", "ours"] == pytest.approx(97.2)
    assert c.loc["epoch", "best_selection"] == SELECTED_ON_VAL
    md = report.claims_markdown(c.reset_index())
    assert "98.20 (max, test-selected, n=3)" in md and "97.20 (best, n=3)" in md


def test_a_best_epoch_chosen_on_the_test_set_is_flagged_in_the_claim(tmp_path):
    runs = _runs([{"model": "lenet300", "dataset": "mnist", "method": "snip", "target": 0.95, "seed": s,
                   "final_acc": 96.0, "best_acc": 97.0 + 0.1 * s, "best_selection": SELECTED_ON_TEST,
                   "final_sparsity": 0.95} for s in range(3)])
    refs = _refs(tmp_path, "epoch,literature,s,s,snip,LeNet-300-100,lenet300,yes,mnist,0.95,,prunable,97.1,"
                           "best_epoch,,two_sided,,x,,")
    (c,) = report.compare(refs, report.summarize(runs)).to_dict("records")
    assert c["best_selection"] == SELECTED_ON_TEST and "our best epoch chosen on the test set (test-selected)" in c["notes"]


# ----------------------------------------------------------------------------- cost-matched LTH rows


def test_pmp_given_the_lth_chains_epochs_is_paired_with_lth_as_cost_matched():
    def rows(method, target, epochs, cost_epochs, finals):
        return [{"model": "lenet300", "dataset": "mnist", "method": method, "target": target, "seed": s,
                 "epochs": float(epochs), "final_acc": acc, "final_sparsity": target,
                 records.column(records.COST_EPOCHS): float(cost_epochs)} for s, acc in enumerate(finals)]

    runs = _runs(rows("lth", 0.487186, 55, 220, (98.0, 98.1, 97.9))        # chain: 4 cycles x 55 epochs
                 + rows("pmp", 0.487186, 55, 55, (97.5, 97.6, 97.4))       # same epochs per cycle
                 + rows("pmp", 0.487186, 220, 220, (98.3, 98.2, 98.4))     # cost-matched
                 + rows("lth", 0.789279, 55, 440, (98.0, 98.0, 98.0))      # 8 cycles: 440, not 220
                 + rows("pmp", 0.789279, 220, 220, (97.0, 97.0, 97.0)))
    groups = report.summarize(runs)
    rel = report.relative_claims(groups, 0.5, costs=[records.column(records.COST_EPOCHS)])
    assert sorted(zip(rel["other"], rel["epochs"], rel["target"], rel["comparison"])) == [
        ("lth", 55.0, 0.487186, "same epochs"), ("lth", 220.0, 0.487186, "cost-matched")]
    cm = rel[rel["comparison"] == "cost-matched"].iloc[0]
    # paired by seed: 98.3 - 98.0, 98.2 - 98.1, 98.4 - 97.9 = 0.3, 0.1, 0.5 -> mean 0.3, std 0.2
    assert cm["diff_mean"] == pytest.approx(0.3) and cm["diff_std"] == pytest.approx(0.2) and cm["n"] == 3
    assert cm["id"] == "pmp_vs_lth_lenet300_mnist_s48.7186_e220_costmatched"
    assert cm["notes"][0] == ("cost-matched: PMP trained 220 epochs in one cycle, the lth chain 220 epochs "
                              "(55 per cycle) to reach this target")
    assert "| lth (cost-matched) |" in report.relative_markdown(rel)
