"""The named mutants that ``tools/mutants.py`` applies: each a plausible one-line bug and the tests
written to catch it. Kept apart from the machinery so either file stays small; add a mutant here.
"""

from __future__ import annotations

from dataclasses import dataclass

SCORING = "tests/test_scoring_mutants.py"
REGROW = "tests/test_regrow.py"
CONTRACT = "tests/test_contract.py"
BEHAVIOURS = "tests/test_untested_behaviours.py"
LATENCY = "tests/test_export_latency.py"
REPORT_LATENCY = "tests/test_report_latency.py"
SELECTION = "tests/test_report_selection.py"
DASH = "tests/test_dashboard.py"


@dataclass(frozen=True)
class Mutant:
    """One plausible bug: replace ``old`` (exactly one occurrence in ``file``) by ``new``."""

    name: str
    file: str
    old: str
    new: str
    #: pytest node ids or files that must fail with the mutant applied
    tests: tuple[str, ...]
    why: str = ""


MUTANTS: tuple[Mutant, ...] = (
    # ------------------------------------------------------------------ the five named in issue 24
    Mutant(
        "grasp-eval-mode", "repro/pruning/scores.py",
        "    clone.train()\n    stream = iter(batches)",
        "    clone.eval()\n    stream = iter(batches)",
        (f"{SCORING}::test_grasp_scores_a_batchnorm2d_network_in_train_mode_with_batch_statistics",),
        "GraSP scores with BatchNorm on running statistics instead of batch statistics",
    ),
    Mutant(
        "synflow-abs-weights-only", "repro/pruning/scores.py",
        "        for t in clone.state_dict().values():",
        "        for t in [clone.get_submodule(n).weight for n in masks.names]:",
        (f"{SCORING}::test_synflow_linearises_every_parameter_and_buffer_not_only_the_prunable_weights",),
        "SynFlow linearises the prunable weights but leaves biases, BN affine and running stats signed",
    ),
    Mutant(
        "synflow-scores-once", "repro/pruning/at_init.py",
        "        scores = scoring.synflow(model, masks, input_shape, dtype=dtype)",
        "        scores = scoring.synflow(model, masks, input_shape, dtype=dtype) if k == 1 else scores",
        (f"{SCORING}::test_synflow_rescores_the_masked_network_every_round",),
        "iterative SynFlow ranks every round by the round-1 scores",
    ),
    Mutant(
        "lth-prunes-rewound-weights", "repro/pruning/iterative.py",
        "        magnitudes = scoring.magnitude(ctx.masks.weights)\n        if self.layer_rates:",
        "        magnitudes = scoring.magnitude([self.rewind_state[f\"{n}.weight\"] for n in ctx.masks.names])\n"
        "        if self.layer_rates:",
        (f"{SCORING}::test_lth_prunes_by_the_trained_weights_then_rewinds_them",),
        "LTH ranks by the magnitudes of the weights it rewinds to, not of the trained ones",
    ),
    Mutant(
        "synflow-train-mode", "repro/pruning/scores.py",
        "    clone.to(dtype)\n    clone.eval()",
        "    clone.to(dtype)\n    clone.train()",
        (f"{SCORING}::test_synflow_scores_a_batchnorm2d_only_network_in_eval_mode_with_running_statistics",),
        "SynFlow normalises BatchNorm2d by the statistics of its one all-ones input",
    ),
    # ------------------------------------------------------------------ PMP's schedule and selection
    Mutant(
        "pmp-ignores-update-unit", "repro/pruning/methods.py",
        '        every = sch.update_frequency * (steps_per_epoch if sch.update_unit == "epochs" else 1)',
        "        every = sch.update_frequency",
        (f"{BEHAVIOURS}::test_update_unit_epochs_moves_the_sparsity_only_at_epoch_boundaries",
         f"{BEHAVIOURS}::test_plan_lists_the_update_steps"),
        "schedule.update_unit=epochs is read as iterations",
    ),
    Mutant(
        "pmp-plan-drops-the-end", "repro/pruning/methods.py",
        "        steps = list(range(self.start_step, self.end_step, every)) + [self.end_step]",
        "        steps = list(range(self.start_step, self.end_step, every))",
        (f"{BEHAVIOURS}::test_plan_lists_the_update_steps",),
        "the last update, the one that lands on the final sparsity, is not planned",
    ),
    Mutant(
        "pmp-layerwise-selection", "repro/pruning/methods.py",
        "        ctx.masks.prune_to(scoring.magnitude(ctx.masks.weights), target, scope=self.scope)",
        '        ctx.masks.prune_to(scoring.magnitude(ctx.masks.weights), target, scope="layerwise")',
        (f"{BEHAVIOURS}::test_update_unit_epochs_moves_the_sparsity_only_at_epoch_boundaries",),
        "PMP ranks magnitudes per layer although scope=global (same counts on LeNet-300-100)",
    ),
    Mutant(
        "masked-sgd-moves-pruned-weights", "repro/optim.py",
        "                p.addcmul_(mask, d, value=-lr)",
        "                p.add_(d, alpha=-lr)",
        (f"{BEHAVIOURS}::test_update_unit_epochs_moves_the_sparsity_only_at_epoch_boundaries",),
        "the CPU SGD step forgets the mask: pruned weights move off zero after the optimizer step",
    ),
    Mutant(
        "global-ties-earliest-lose", "repro/pruning/masks.py",
        "                kept[ties[ties.numel() - surplus:]] = 0.0",
        "                kept[ties[:surplus]] = 0.0",
        ("tests/test_masks.py::test_ties_are_broken_by_position_in_both_scopes",),
        "global selection drops the earliest ties at the threshold instead of the latest",
    ),
    # ------------------------------------------------------------------ the loop, selection and the run's end
    Mutant(
        "best-epoch-by-test-accuracy", "repro/engine/evaluation.py",
        "        key = VAL_ACC if VAL_ACC in final[0] else TEST_ACC",
        "        key = TEST_ACC",
        (f"{BEHAVIOURS}::test_best_epoch_follows_the_validation_accuracy_when_there_is_a_validation_split",
         f"{BEHAVIOURS}::test_headline_picks_the_best_validation_epoch_among_final_mask_epochs_only"),
        "the best epoch is chosen on the test set even with a validation split",
    ),
    Mutant(
        "eval-every-off-by-one", "repro/engine/loop.py",
        "        if last or (epoch + 1) % self.cfg.eval_every == 0:",
        "        if last or epoch % self.cfg.eval_every == 0:",
        (f"{BEHAVIOURS}::test_eval_every_evaluates_every_nth_epoch_and_always_the_last",),
        "trainer.eval_every counts epochs from 0: epochs 1, 3, 5 instead of 2, 4, 5",
    ),
    Mutant(
        "ctrl-c-leaves-the-run-running", "repro/train.py",
        "    except KeyboardInterrupt as exc:",
        "    except Terminated as exc:",
        (f"{BEHAVIOURS}::test_ctrl_c_ends_the_run_killed_and_keeps_what_was_logged",),
        "only SIGTERM ends the run KILLED; Ctrl-C leaves it RUNNING forever",
    ),
    Mutant(
        "cifar-augmentation-never-on", "repro/engine/loop.py",
        "        augment = cfg.augment and dataset.spec.augment",
        '        augment = cfg.augment and dataset.name == "cifar-10"',
        (f"{BEHAVIOURS}::test_cifar_augmentation_reaches_the_training_loop",),
        "a misspelt dataset name: CIFAR trains on unaugmented images",
    ),
    Mutant(
        "augment-flag-not-passed", "repro/train.py",
        "        cfg.trainer, seed=cfg.seed, augment=d.augment, precision=spec.precision,",
        "        cfg.trainer, seed=cfg.seed, precision=spec.precision,",
        (f"{BEHAVIOURS}::test_cifar_augmentation_reaches_the_training_loop",),
        "data.augment=false is ignored: the loop's default (on) wins",
    ),
    Mutant(
        "mask-from-run-id-not-resolved", "repro/train.py",
        '    return OmegaConf.merge(cfg.pruner, {"source": str(path)})',
        "    return cfg.pruner",
        (f"{BEHAVIOURS}::test_mask_from_a_run_id_retrains_exactly_that_runs_final_mask",),
        "pruner.source=<run id> downloads the artifact but hands the method the run id",
    ),
    # ------------------------------------------------------------------ issue 16: the seams of regrowing methods
    Mutant(
        "erk-never-dense", "repro/pruning/density.py",
        "        if not over:",
        "        if True:",
        (f"{REGROW}::test_erk_counts_of_a_two_layer_mlp_by_hand",),
        "ERK hands a layer a density above 1 instead of keeping it dense and solving again",
    ),
    Mutant(
        "update-resets-grown-only", "repro/pruning/masks.py",
        "            self.reset_optimizer_state(optimizer, [d | g for d, g in zip(dropped, grown)])",
        "            self.reset_optimizer_state(optimizer, grown)",
        (f"{REGROW}::test_update_revives_and_resets_state_at_every_dropped_and_grown_position",),
        "a dropped weight keeps its momentum / Adam moments",
    ),
    Mutant(
        "grow-excludes-just-dropped", "repro/pruning/regrow.py",
        "    grown = select_topk(grow_score, 1.0 - kept, n - k)",
        "    grown = select_topk(grow_score, 1.0 - mask, n - k)",
        (f"{REGROW}::test_drop_and_grow_moves_floor_f_active_per_layer",),
        "growth only among weights inactive before the update (RigL's code may regrow a just-dropped one)",
    ),
    Mutant(
        "monotone-never-checked", "repro/engine/loop.py",
        "        if not self.method.monotone:\n            return",
        "        if True:\n            return",
        (f"{REGROW}::test_a_monotone_method_that_revives_a_weight_is_stopped",),
        "a method declared monotone revives weights unnoticed",
    ),
    Mutant(
        "registry-takes-duplicates", "repro/pruning/methods.py",
        "    if name in REGISTRY and REGISTRY[name] is not cls:",
        "    if False:",
        (f"{REGROW}::test_the_registry_refuses_a_taken_name_and_a_missing_one",),
        "a second class named pmp silently replaces PMP",
    ),
    Mutant(
        "dense-gradient-steps-free", "repro/cost.py",
        "        total += (dense_forward - sparse_forward) * batch_size",
        "        total += 0.0",
        (f"{REGROW}::test_a_dense_gradient_step_costs_f_dense_minus_f_sparse_more",),
        "RigL's dense-gradient steps costed as sparse ones",
    ),
    Mutant(
        "sgd-update-unmasked", "repro/optim.py",
        "                p.addcmul_(mask, d, value=-lr)",
        "                p.add_(d, alpha=-lr)",
        (f"{CONTRACT}::test_a_method_meets_the_contract[pmp]",),
        "SGD moves masked weights off zero between mask updates",
    ),
    Mutant(
        "rigl-reads-masked-gradients", "repro/engine/loop.py",
        "            method.before_optimizer_step(self.ctx, step + 1)  # dense gradients: RigL reads them here",
        "            masks.mask_grads() if mask_grads else None; method.before_optimizer_step(self.ctx, step + 1)",
        (f"{REGROW}::test_rigl_grows_where_the_dense_gradient_of_the_steps_batch_is_largest",),
        "the hook runs after Adam's gradients are masked: RigL grows by zeros, i.e. by position",
    ),
    Mutant(
        "set-grows-zeros", "repro/pruning/regrow.py",
        '        if self.grow_init == "init":',
        "        if False:",
        (f"{REGROW}::test_grown_weights_start_as_the_method_says[set]",),
        "SET's grown weights start at 0.0 instead of a fresh draw of the initialisation",
    ),
    Mutant(
        "resume-forgets-dense-gradient-steps", "repro/engine/loop.py",
        '        self.method.dense_gradient_steps = tuple(int(s) for s in cost.get("dense_gradient_steps", ()))',
        "        pass",
        (f"{CONTRACT}::test_a_method_crashed_mid_epoch_resumes_to_the_uninterrupted_numbers[rigl]",),
        "a resumed RigL run loses the dense-gradient steps before the crash from its cost",
    ),
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
        "        if _get(row, f\"tags.{rec.PARENT_RUN_TAG}\") and not _get(row, f\"tags.{rec.SWEEP_TAG}\"):",
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
        '    "b1 ms dense / sparse": ((_col(records.LATENCY_DENSE_B1_MS), _col(records.LATENCY_SPARSE_B1_MS)), 3),',
        '    "b1 ms dense / sparse": ((_col(records.LATENCY_SPARSE_B1_MS), _col(records.LATENCY_DENSE_B1_MS)), 3),',
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
    # ------------------------------------------------------------------ issue 15: MLflow records
    Mutant("legacy-accuracy-left-a-fraction", "repro/records.py", '    "final_test_acc": (FINAL_TEST_ACC, 100.0),',
           '    "final_test_acc": (FINAL_TEST_ACC, 1.0),', ("tests/test_report_golden.py",),
           "a store logged before the namespaces reads its accuracies as fractions of a percent"),
    Mutant("mask-updates-not-reported", "repro/engine/loop.py", "        self.on_mask({rec.SPARSITY:",
           "        (lambda m, s: None)({rec.SPARSITY:",
           ("tests/test_train_cli.py::test_pmp_run_ends_at_exact_sparsity_following_the_schedule",),
           "sparsity only at epoch ends: the PMP ramp is invisible in MLflow"),
    Mutant("dirty-counts-report-outputs", "repro/tracking.py",
           """                         *(f":(exclude){p}" for p in NOT_CODE)))""",
           "                         ))", (f"{DASH}::test_report_outputs_do_not_make_the_checkout_dirty",),
           "a report rewriting results/ marks every later run 'uncommitted changes'"),
    Mutant("sweep-parent-ignores-failed-jobs", "repro/sweep_run.py",
           '    failed = any(s in ("FAILED", "KILLED") for s in statuses)', "    failed = False",
           (f"{DASH}::test_sweep_jobs_are_children_of_one_parent_and_a_failed_job_fails_it",),
           "a sweep with a failed job ends FINISHED"),
    Mutant("logged-model-keeps-mask-buffers", "repro/model_log.py", "        mask = state.pop(key)", "        mask = state[key]",
           (f"{DASH}::test_logged_model_loads_in_a_fresh_process_with_the_runs_test_accuracy",),
           "the logged model's state dict keeps weight_mask entries: no plain network loads it"),
)
