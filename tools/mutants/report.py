"""The mutants of what reads the runs: per-run latency, the deploy plot, the report's selection flags,
max over checkpoints and cost-matched rows."""

from __future__ import annotations

from .spec import LATENCY, REPORT_LATENCY, SELECTION, Mutant

REPORT: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ issue 18: per-run latency, deploy plot
    Mutant(
        "latency-times-every-run-again", "repro/export/profile_latency.py",
        "        elif _get(row, f\"metrics.{rec.LATENCY_DONE}\") is not None and not force:",
        "        elif _get(row, f\"metrics.{rec.LATENCY_DONE}\") is not None and force:",
        (f"{LATENCY}::test_profile_latency_logs_each_finished_run_once_and_skips_it_next_time",),
        "the skip rule inverted: a rerun of make reproduce-table times and logs every run again, --force skips them",
    ),
    Mutant(
        "latency-nested-lth-runs-timed", "repro/export/profile_latency.py",
        "        if _get(row, f\"tags.{rec.PARENT_RUN_TAG}\"):",
        "        if False:",
        (f"{LATENCY}::test_profile_latency_logs_each_finished_run_once_and_skips_it_next_time",),
        "an LTH target run is timed on whatever weights its artifact holds, not as a run of its own",
    ),
    Mutant(
        "latency-overwrites-logged-sizes", "repro/export/profile_latency.py",
        "                    extra = {} if _get(row, f\"metrics.{rec.SIZE_SPARSE_BYTES}\") is not None else sizes",
        "                    extra = sizes",
        (f"{LATENCY}::test_profile_latency_logs_each_finished_run_once_and_skips_it_next_time",),
        "the timing step logs the export's sizes over the sizes the run logged when it trained",
    ),
    Mutant(
        "latency-unknown-profile-passes", "repro/export/profile_latency.py",
        "    if runs.empty:\n        print(f\"error: no FINISHED runs",
        "    if runs is None:\n        print(f\"error: no FINISHED runs",
        (f"{LATENCY}::test_profile_latency_bad_input_is_one_error_line_and_logs_nothing",),
        "a misspelt --profile times nothing and exits 0: make reproduce-table goes on as if the runs were timed",
    ),
    Mutant(
        "latency-cell-dense-sparse-swapped", "repro/report/render.py",
        '    "b1 ms dense / sparse": ((records.LATENCY_DENSE_B1_MS, records.LATENCY_SPARSE_B1_MS), 3),',
        '    "b1 ms dense / sparse": ((records.LATENCY_SPARSE_B1_MS, records.LATENCY_DENSE_B1_MS), 3),',
        (f"{REPORT_LATENCY}::test_latency_columns_per_group_by_hand_and_blank_where_untimed",),
        "the batch-1 cell reads sparse / dense under a dense / sparse header",
    ),
    Mutant(
        "deploy-plot-without-dense", "repro/report/plot_deploy.py",
        '        for col, style, face in ((sparse_col, "-", colors[method]), (dense_col, "--", "none")):',
        '        for col, style, face in ((sparse_col, "-", colors[method]),):',
        (f"{REPORT_LATENCY}::test_deploy_plot_one_figure_per_setting_dense_beside_csr_one_line_each_per_method",),
        "the deploy plot draws the CSR lines only: nothing to set them beside",
    ),
    # ------------------------------------------------------------------ selection, max over checkpoints (issue 14)
    Mutant(
        "best-on-val-inverted", "repro/engine/evaluation.py",
        "        out[BEST_ON_VAL] = float(key == VAL_ACC)",
        "        out[BEST_ON_VAL] = float(key == TEST_ACC)",
        (f"{SELECTION}::test_headline_flags_the_selection_and_takes_the_max_over_final_mask_epochs",),
        "the loop flags a test-selected best epoch as chosen on the validation split, and the other way round",
    ),
    Mutant(
        "max-test-acc-counts-denser-epochs", "repro/engine/evaluation.py",
        "        out[MAX_TEST_ACC] = max(h[TEST_ACC] for h in final)",
        "        out[MAX_TEST_ACC] = max(h[TEST_ACC] for h in evaluated)",
        (f"{SELECTION}::test_headline_flags_the_selection_and_takes_the_max_over_final_mask_epochs",),
        "max_test_acc counts epochs of a denser mask (PMP's early epochs): not the subnetwork's checkpoint",
    ),
    Mutant(
        "selection-ignores-the-flag", "repro/report/reading.py",
        "    on_val = flag.where(flag.notna(), (val_size > 0).astype(float))",
        "    on_val = (val_size > 0).astype(float)",
        (f"{SELECTION}::test_best_selection_from_the_metric_and_for_older_runs_from_the_validation_split",),
        "the report guesses the selection from the params even where the run logged how it chose",
    ),
    Mutant(
        "selection-old-runs-always-validation", "repro/report/reading.py",
        "    val_size = _num(raw, _param(records.VAL_SIZE_PARAM)).fillna(0.0)",
        "    val_size = _num(raw, _param(records.VAL_SIZE_PARAM)).fillna(1.0)",
        (f"{SELECTION}::test_best_selection_from_the_metric_and_for_older_runs_from_the_validation_split",),
        "an old run that never logged data.val_size is taken for validation-selected",
    ),
    Mutant(
        "max-history-ignores-mask-flag", "repro/report/reading.py",
        "and finals.get(step, 1.0) == 1.0]",
        "]",
        (f"{SELECTION}::test_max_from_a_hand_written_history_counts_the_last_cycle_on_its_final_mask",),
        "the derived max counts epochs before the mask was final",
    ),
    Mutant(
        "fill-max-overwrites-logged", "repro/report/reading.py",
        '    for i in runs.index[runs["max_acc"].isna()]:',
        "    for i in runs.index:",
        (f"{SELECTION}::test_fill_max_acc_reads_the_history_only_of_runs_that_lack_the_metric",),
        "the report replaces a logged max_test_acc by one derived from the history",
    ),
    Mutant(
        "best-checkpoint-compared-with-best-epoch", "repro/report/claims.py",
        '    if ref["metric"] == MAX_METRIC and g.get("max_n", 0) > 0:',
        '    if False:',
        (f"{SELECTION}::test_a_best_checkpoint_reference_is_compared_with_the_max_over_checkpoints",),
        "SNIP's max over checkpoints is compared with our validation-selected best epoch",
    ),
    Mutant(
        "test-selected-best-not-flagged", "repro/report/claims.py",
        "    return str(g.get(\"best_selection\", \"\")) if used == \"best\" else \"\"",
        "    return \"\"",
        (f"{SELECTION}::test_a_best_epoch_chosen_on_the_test_set_is_flagged_in_the_claim",
         f"{SELECTION}::test_a_best_checkpoint_reference_is_compared_with_the_max_over_checkpoints"),
        "a claim compared on a best epoch does not say how the epoch was chosen",
    ),
    Mutant(
        "cost-matched-ignores-epochs", "repro/report/relative.py",
        "    return g[(g[cost] - pmp[\"epochs\"]).abs() <= COST_MATCH_EPOCHS]",
        "    return g",
        (f"{SELECTION}::test_pmp_given_the_lth_chains_epochs_is_paired_with_lth_as_cost_matched",),
        "any PMP group at LTH's target and recipe is called cost-matched, whatever its epochs",
    ),
    Mutant(
        "cost-matched-row-forgets-the-dense-cycle", "conf/row/lenets/lth_pmp49_costmatched.yaml",
        "  epochs: 220",
        "  epochs: 165",
        ("tests/test_profiles.py::test_lenets_profile_rows_follow_their_recipe_and_never_share_an_identity",),
        "PMP gets only LTH's 3 pruning rounds (3 x 55) and not its first, dense cycle",
    ),
)
