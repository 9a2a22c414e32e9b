"""The sensitivity analysis (issue 19): the design found from params, the statistics by hand, the profile's rows.

Expected numbers are worked out by hand below (group means, pooled std, one-way ANOVA F), never
by the module under test; the profile's rows are checked against their own file names.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from repro.report import make_report, sensitivity
from tests.test_profiles import CONF, make
from tests.test_report import _add_run

CTX = {"model": "lenet300", "dataset": "fashion_mnist", "data_source": "debian", "epochs": 8.0, "width": 1.0,
       "optim_name": "sgd", "optim_lr": "0.1", "batch_size": "100", "val_size": "0"}


def _frames(rows: list[tuple[str, str, float, float, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tidy runs, raw MLflow frame) from (run_id, method, target, final_acc %, params) rows."""
    runs = pd.DataFrame([{"run_id": rid, "method": m, "target": t, "final_acc": acc, **CTX}
                         for rid, m, t, acc, _ in rows])
    raw = pd.DataFrame([{"run_id": rid, **{f"params.{k}": v for k, v in p.items()}} for rid, *_, p in rows])
    return runs, raw


def _design() -> list[tuple[str, str, float, float, dict]]:
    """Window end at 90%: default (end 0.5) 90, 91, 92; end 0.25: 92, 93, 94; end 0.75: 87, 89, 91; dense 95-97."""
    rows = []
    for value, accs in (("0.5", (90, 91, 92)), ("0.25", (92, 93, 94)), ("0.75", (87, 89, 91))):
        for seed, acc in enumerate(accs):
            rows.append((f"end{value}-{seed}", "pmp", 0.9, float(acc), {"schedule.end": value}))
    rows += [(f"dense{s}", "dense", 0.0, 95.0 + s, {}) for s in range(3)]
    return rows


def test_spread_pooled_std_and_anova_by_hand():
    # means 91, 93, 89 -> spread 4; sample variances 1, 1, 4 -> pooled std sqrt((2 + 2 + 8) / 6) = sqrt(2).
    # ANOVA: grand mean 91, SSB = 3 * (0 + 4 + 4) = 24 over 2 df -> 12; SSW = 2 + 2 + 8 = 12 over 6 df -> 2;
    # F = 6. F(2, 6) tables: 5.14 at p = 0.05, 7.26 at p = 0.025.
    a = sensitivity.analyse(*_frames(_design()))
    r = a.ranking.set_index("setting").loc["window_end"]
    assert r["values"] == 3 and r["seeds_per_cell"] == "3"
    assert r["spread_pp"] == pytest.approx(4.0)
    assert r["seed_std_pp"] == pytest.approx(math.sqrt(2))
    assert r["spread_over_std"] == pytest.approx(4 / math.sqrt(2))
    assert r["anova_F"] == pytest.approx(6.0)
    assert 0.025 < r["anova_p"] < 0.05 and r["verdict"] == sensitivity.MOVES
    assert r["default_acc"] == pytest.approx(91.0)
    assert (r["best_value"], r["worst_value"]) == ("0.25", "0.75")
    assert r["largest_shift_vs_default_pp"] == pytest.approx(2.0)  # |93 - 91| = |89 - 91|: the first found
    assert list(a.ranking["setting"]) == ["window_end"]  # the only setting that was moved
    cells = a.cells[a.cells["setting"] == "window_end"]
    assert list(cells["value"]) == ["0.25", "0.5", "0.75"] and list(cells["is_default"]) == [False, True, False]
    # 95% t-interval of 90, 91, 92: 91 +- 4.303 * 1 / sqrt(3)
    d = cells[cells["is_default"]].iloc[0]
    assert d["lo"] == pytest.approx(91 - 4.302653 / math.sqrt(3), abs=1e-4)
    assert a.dense["mean"].iloc[0] == pytest.approx(96.0)


def test_overlapping_values_are_within_seed_noise():
    rows = [(f"d{s}", "pmp", 0.98, acc, {}) for s, acc in enumerate((80.0, 82.0, 84.0))]
    rows += [(f"l{s}", "pmp", 0.98, acc, {"pruner.scope": "layerwise"}) for s, acc in enumerate((81.0, 83.0, 82.0))]
    r = sensitivity.analyse(*_frames(rows)).ranking.iloc[0]
    # means 82 and 82: spread 0, F = 0
    assert r["setting"] == "selection" and r["spread_pp"] == pytest.approx(0.0)
    assert r["anova_F"] == pytest.approx(0.0) and r["verdict"] == sensitivity.NOISE


def test_runs_off_the_design_or_in_another_context_are_not_compared():
    rows = _design()
    rows.append(("two", "pmp", 0.9, 50.0, {"schedule.end": "0.25", "pruner.scope": "layerwise"}))  # two settings
    runs, raw = _frames(rows)
    runs.loc[len(runs)] = {**runs.iloc[0].to_dict(), "run_id": "e16", "epochs": 16.0, "final_acc": 10.0}
    raw.loc[len(raw)] = {"run_id": "e16", "params.schedule.end": "0.25"}
    a = sensitivity.analyse(runs, raw)
    r = a.ranking.set_index("setting").loc["window_end"]
    assert r["spread_pp"] == pytest.approx(4.0)  # neither the 50% nor the 10% run took part
    assert any("more than one setting" in n for n in a.notes)
    assert len(a.ranking) == 1  # the 16-epoch context has no default point


def test_a_single_seed_gives_no_anova():
    rows = [("d", "pmp", 0.9, 90.0, {}), ("c", "pmp", 0.9, 91.0, {"schedule.name": "cubic"})]
    r = sensitivity.analyse(*_frames(rows)).ranking.iloc[0]
    assert r["verdict"] == sensitivity.TOO_FEW and math.isnan(r["anova_p"])


@pytest.mark.parametrize("milestones, expected", [
    ("[0.625, 0.875]", "ends before both decays (0.625, 0.875)"),
    ("[0.5, 0.75]", "ends at a decay (0.5, 0.75)"),
    ("[0.25, 0.75]", "ends between the decays (0.25, 0.75)"),
    ("[0.125, 0.375]", "ends after both decays (0.125, 0.375)"),
])
def test_where_the_window_ends_against_the_lr_decays(milestones, expected):
    p = {"optim.lr_schedule": "multistep", "optim.milestones": sensitivity.norm(milestones)}
    assert sensitivity.SETTINGS[4].label(p)[0] == expected


def test_defaults_are_the_composed_default_pmp():
    cfg = make("pruner=pmp")
    flat = {"schedule.start": cfg.schedule.start, "schedule.end": cfg.schedule.end,
            "schedule.update_frequency": cfg.schedule.update_frequency, "schedule.update_unit": cfg.schedule.update_unit,
            "schedule.name": cfg.schedule.name, "optim.lr_schedule": cfg.optim.lr_schedule,
            "optim.milestones": list(cfg.optim.milestones), "pruner.scope": cfg.pruner.scope}
    assert {k: sensitivity.norm(str(v)) for k, v in flat.items()} == sensitivity.DEFAULTS


#: a row file's prefix -> the setting it must move (and nothing else)
ROW_SETTING = {"pmp": "default", "end": "window_end", "start": "window_start", "freq": "update_frequency",
               "shape": "ramp_shape", "lr": "lr_decays", "layerwise": "selection"}


@pytest.mark.parametrize("row", sorted(p.stem for p in (CONF / "row" / "sensitivity").glob("*.yaml")
                                       if p.stem != "dense"))
def test_each_sensitivity_row_moves_exactly_the_setting_its_name_says(row):
    cfg = make(f"+row=sensitivity/{row}", "sparsity=0.9", "+profile=sensitivity")
    assert cfg.pruner.name == "pmp"
    params = {k: sensitivity.norm(str(list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v))
              for k in sensitivity.DEFAULTS for v in [_get(cfg, k)]}
    assert sensitivity.classify(params) == ROW_SETTING[row.split("_")[0]]


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def test_report_writes_the_ranking_and_one_plot_per_setting(mlflow_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("repro").experiment_id
    for i, (rid, method, target, acc, params) in enumerate(_design()):
        # the group tag keeps the three window ends apart (runs of one group and seed would be duplicates)
        _add_run(client, exp, method=method, sparsity=target, seed=int(rid[-1]), final=acc / 100, profile="sens",
                 params=params, start=i, tags={"repro.group": rid[:-2]})
    out = tmp_path / "out"
    rep = make_report(["--tracking-uri", mlflow_uri, "--profile", "sens", "--out", str(out), "--no-log"])
    names = {p.name for p in rep.files}
    assert {"ranking.csv", "sensitivity.md", "sensitivity_window_end.png"} <= names
    ranking = pd.read_csv(out / "ranking.csv")
    assert ranking.loc[0, "setting"] == "window_end" and ranking.loc[0, "spread_pp"] == pytest.approx(4.0)
    assert "sensitivity.md" in (out / "table.md").read_text()


def test_the_csv_keeps_small_p_values_and_rounds_the_rest():
    ranking = pd.DataFrame({"spread_pp": [1.946666], "anova_p": [3.1234e-08]})
    out = sensitivity.ranking_for_csv(ranking)
    assert out.loc[0, "spread_pp"] == 1.9467 and out.loc[0, "anova_p"] == 3.12e-08
