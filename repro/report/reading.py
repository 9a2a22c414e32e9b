"""Reading MLflow: the runs of one profile as a raw frame, then one tidy row per run.

The only module of the report that knows MLflow's column names (``tags.*``, ``params.*``,
``metrics.*``); every record name comes from :mod:`repro.records`, which the training side
writes with, so a renamed record cannot silently turn into a column of NaNs here.

Runs are grouped by :data:`GROUP_KEYS` (what the table shows) plus the run's group tag
(:data:`repro.records.GROUP_TAG`, the identity without the seed). The tag keeps runs that
differ only in settings the table does not show (learning rate, batch size, ...) apart:
they are neither averaged together nor taken for duplicates of each other. Runs written
before the tag existed have an empty group tag and group as they always did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from repro import records

#: what one row of the table shows and aggregates over (seeds vary inside a group)
GROUP_KEYS = ["model", "dataset", "data_source", "method", "target", "epochs", "width"]
#: the column holding the run's group tag ("" for runs without one)
GROUP_COLUMN = "group"
#: what actually defines a group: the visible keys and the group tag
GROUP_BY = [*GROUP_KEYS, GROUP_COLUMN]
#: what a dense baseline must share with a pruned group
BASE_KEYS = ["model", "dataset", "data_source", "epochs", "width"]
#: tidy column -> config param of the recipe two methods must share to be compared head to head
#: (claim_relative); a param a run did not log reads as "" (two such runs count as the same)
RECIPE_PARAMS = {
    "optim_name": records.OPTIM_NAME_PARAM,
    "optim_lr": records.OPTIM_LR_PARAM,
    "batch_size": records.BATCH_SIZE_PARAM,
    "val_size": records.VAL_SIZE_PARAM,
}
#: how a run's best epoch was chosen (column ``best_selection``): on a validation split, or on the
#: test set itself, which flatters the number (the table says so wherever it shows one)
SELECTED_ON_VAL = "validation"
SELECTED_ON_TEST = "test (test-selected)"
#: a metric's history as (step, value) pairs: MlflowClient.get_metric_history, or a test's stand-in
History = Callable[[str, str], Sequence[tuple[int, float]]]
#: the test accuracy's name (a fraction) in runs logged before the namespaces
LEGACY_TEST_ACC = next(old for old, (new, _) in records.LEGACY_METRICS.items() if new == records.TEST_ACC)
#: run kinds that are not results: earlier reports (in the experiment before they had their own), LTH
#: chains (their targets are nested runs), sweep parents (their jobs are nested runs)
SKIPPED_KINDS = (records.KIND_REPORT, records.KIND_CHAIN, records.KIND_SWEEP)


def _tag(name: str) -> str:
    return f"tags.{name}"


def _param(name: str) -> str:
    return f"params.{name}"


def _metric(name: str) -> str:
    return f"metrics.{name}"


def fetch_runs(uri: str, experiment: str, profile: str | None) -> pd.DataFrame:
    """All active runs of the experiment (of this profile) as mlflow.search_runs gives them."""
    import mlflow
    from mlflow.entities import ViewType

    mlflow.set_tracking_uri(uri)
    exp = mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame()

    def search(filt: str = "") -> pd.DataFrame:
        return mlflow.search_runs([exp.experiment_id], filter_string=filt, run_view_type=ViewType.ACTIVE_ONLY,
                                  output_format="pandas")

    if profile:
        # the run's own profile, or a profile that reused it (a FINISHED run skipped by a later sweep);
        # MLflow filters have no OR, so two server-side searches
        quoted = profile.replace("\\", "\\\\").replace("'", "\\'")
        found = [f for f in (search(f"{_tag(records.PROFILE_TAG)} = '{quoted}'"),
                             search(f"tags.`{records.profile_tag(profile)}` = '1'"))
                 if not f.empty]
        df = pd.concat(found, ignore_index=True).drop_duplicates("run_id") if found else pd.DataFrame()
    else:
        df = search()
    col = _tag(records.KIND_TAG)
    if col in df.columns:
        df = df[~df[col].fillna("").isin(list(SKIPPED_KINDS))]
    return df.reset_index(drop=True)


def migrate_legacy(raw: pd.DataFrame) -> pd.DataFrame:
    """Runs logged before the namespaces (flat names, accuracies as fractions) read as new ones:
    each old ``metrics.<name>`` column fills its current one (in the current unit) where a run has
    no value under the current name (:data:`repro.records.LEGACY_METRICS`)."""
    out = raw.copy()
    for c in raw.columns:
        if not c.startswith("metrics."):
            continue
        found = records.legacy_metric(c[len("metrics."):])
        if found is None:
            continue
        new, factor = found
        old = pd.to_numeric(raw[c], errors="coerce") * factor
        target = _metric(new)
        out[target] = out[target].where(out[target].notna(), old) if target in out.columns else old
    return out


def metric_history(client: Any, run_id: str, name: str) -> list[tuple[int, float]]:
    """(step, value) of a metric over training in the current unit, under its current name or,
    for a run logged before the namespaces, its old one."""
    points = client.get_metric_history(run_id, name)
    factor = 1.0
    if not points:
        for old, (new, f) in records.LEGACY_METRICS.items():
            if new == name and (points := client.get_metric_history(run_id, old)):
                factor = f
                break
    return sorted((m.step, m.value * factor) for m in points)


def _col(raw: pd.DataFrame, *names: str) -> pd.Series:
    """The first of the columns present, filled from the next ones where missing."""
    out = pd.Series([None] * len(raw), index=raw.index, dtype=object)
    for name in names:
        if name in raw.columns:
            out = out.where(out.notna(), raw[name])
    return out


def _num(raw: pd.DataFrame, *names: str) -> pd.Series:
    return pd.to_numeric(_col(raw, *names), errors="coerce").astype(float)


def tidy(raw: pd.DataFrame, dense_methods: Sequence[str] = ("dense",)) -> pd.DataFrame:
    """One row per run with the columns the report uses (accuracies in %, sparsities as fractions)."""
    r = records
    raw = migrate_legacy(raw)
    if raw.empty:
        return pd.DataFrame(columns=["run_id", *GROUP_BY, "seed", "status"])
    df = pd.DataFrame({
        "run_id": raw["run_id"],
        "run_name": _col(raw, _tag(r.RUN_NAME_TAG)).fillna(""),
        "status": raw["status"],
        "start_time": pd.to_datetime(raw["start_time"]) if "start_time" in raw else pd.NaT,
        "model": _col(raw, _tag(r.MODEL_TAG), _param(r.MODEL_PARAM)).fillna("unknown"),
        "dataset": _col(raw, _tag(r.DATASET_TAG), _param(r.DATASET_PARAM)).fillna("unknown"),
        "data_source": _col(raw, _tag(r.DATA_SOURCE_TAG)).fillna("unknown"),
        "method": _col(raw, _tag(r.METHOD_TAG), _param(r.METHOD_PARAM)).fillna("unknown"),
        "sparsity_param": _num(raw, _param(r.SPARSITY_PARAM)),
        "seed": _col(raw, _param(r.SEED_PARAM)).fillna(raw["run_id"]),
        "epochs": _num(raw, _param(r.EPOCHS_PARAM)),
        "width": _num(raw, _param(r.WIDTH_PARAM)).fillna(1.0),
        "commit": _col(raw, _tag(r.GIT_COMMIT_TAG)).fillna("unknown"),
        "dirty": _col(raw, _tag(r.GIT_DIRTY_TAG)).fillna("unknown"),
        "failure": _col(raw, _tag(r.FAILURE_TAG)).fillna(""),
        GROUP_COLUMN: _col(raw, _tag(r.GROUP_TAG)).fillna("").astype(str),
        "final_acc": _num(raw, _metric(r.FINAL_TEST_ACC)),
        "best_acc": _num(raw, _metric(r.BEST_TEST_ACC)),
        "best_selection": best_selection(raw),
        "max_acc": _num(raw, _metric(r.MAX_TEST_ACC)),
        "final_sparsity": _num(raw, _metric(r.FINAL_SPARSITY)),
        "final_sparsity_all": _num(raw, _metric(r.FINAL_SPARSITY_ALL)),
        "final_sparsity_weights": _num(raw, _metric(r.FINAL_SPARSITY_WEIGHTS)),
        "layer_collapse": _num(raw, _metric(r.LAYER_COLLAPSE)),
        "mask_updates": _num(raw, _metric(r.MASK_UPDATES)),
        "train_subset": _num(raw, _param(r.TRAIN_SUBSET_PARAM)),
        "test_subset": _num(raw, _param(r.TEST_SUBSET_PARAM)),
    })
    for col, param in RECIPE_PARAMS.items():
        df[col] = _col(raw, _param(param)).fillna("").astype(str)
    # cost, size and latency metrics keep their own names (cost/*, size/*, latency/* as columns
    # cost_*, size_*, latency_*): a metric the writing side adds reaches the table without a change
    # here; a run that did not log one has NaN in its column
    for prefix in (r.COST_PREFIX, r.SIZE_PREFIX, r.LATENCY_PREFIX):
        full = _metric(prefix)
        for c in raw.columns:
            if c.startswith(full):
                df[r.column(c[len("metrics."):])] = pd.to_numeric(raw[c], errors="coerce")
    dense = df["method"].isin(list(dense_methods))
    df["target"] = np.where(dense, 0.0, df["sparsity_param"].fillna(0.0)).round(6)
    df["seed"] = df["seed"].map(lambda s: int(s) if isinstance(s, str) and re.fullmatch(r"-?\d+", s) else s)
    return df


def best_selection(raw: pd.DataFrame) -> pd.Series:
    """How each run chose its best epoch: its ``best_on_val`` metric, or for runs logged before
    that metric existed the rule the loop has always applied (a validation split, ``data.val_size``
    > 0, means the best validation epoch; none means the best test epoch)."""
    flag = _num(raw, _metric(records.BEST_ON_VAL))
    val_size = _num(raw, _param(records.VAL_SIZE_PARAM)).fillna(0.0)
    on_val = flag.where(flag.notna(), (val_size > 0).astype(float))
    return pd.Series(np.where(on_val > 0, SELECTED_ON_VAL, SELECTED_ON_TEST), index=raw.index, dtype=object)


def max_from_history(test_acc: Sequence[tuple[int, float]], cycle: Sequence[tuple[int, float]] = (),
                     mask_final: Sequence[tuple[int, float]] = ()) -> float:
    """The highest test accuracy (a fraction) over the epochs the loop's ``max_test_acc`` counts:
    those evaluated in the last cycle on the final mask. A history without cycles or mask flags
    counts every evaluated epoch; NaN when nothing was evaluated."""
    cycles, finals = dict(cycle), dict(mask_final)
    last = max(cycles.values()) if cycles else None
    kept = [v for step, v in test_acc
            if (last is None or cycles.get(step, last) == last) and finals.get(step, 1.0) == 1.0]
    return max(kept) if kept else float("nan")


def fill_max_acc(runs: pd.DataFrame, history: History) -> pd.DataFrame:
    """``max_acc`` (%) for runs logged before ``max_test_acc`` existed, from their test-accuracy
    history (only runs that lack it are read, one history per metric)."""
    if runs.empty or "max_acc" not in runs:
        return runs
    runs = runs.copy()
    for i in runs.index[runs["max_acc"].isna()]:
        rid = runs.at[i, "run_id"]
        # only runs logged before max_test_acc, so before the namespaces: flat names, fractions
        acc = history(rid, LEGACY_TEST_ACC)
        if acc:
            runs.at[i, "max_acc"] = 100.0 * max_from_history(acc, history(rid, records.CYCLE),
                                                             history(rid, records.MASK_FINAL))
    return runs


def mlflow_history(uri: str) -> History:
    """The metric history of a run in the store at ``uri`` as (step, value) pairs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return lambda run_id, key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def split_runs(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(complete runs, left-out runs with a reason, superseded duplicates).

    A duplicate is an older finished run of the same group (visible keys and group tag) and
    seed: a rerun replaces it. Runs whose group tags differ are different experiments and
    never replace each other, however alike the table's columns make them look.
    """
    if GROUP_COLUMN not in df.columns:  # a frame built by hand, without the tag
        df = df.assign(**{GROUP_COLUMN: ""})
    done = (df["status"] == "FINISHED") & df["final_acc"].notna()
    left = df[~done].copy()
    left["reason"] = np.where(left["status"] == "FINISHED", f"FINISHED without {records.FINAL_TEST_ACC}", left["status"])
    ok = df[done].sort_values("start_time", ascending=False, kind="stable")
    dup = ok.duplicated(subset=[*GROUP_BY, "seed"], keep="first")
    return ok[~dup].reset_index(drop=True), left.reset_index(drop=True), ok[dup].reset_index(drop=True)
