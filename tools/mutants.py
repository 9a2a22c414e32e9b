"""``make mutants``: apply named one-line bugs to a copy of the package and check that the tests
written against each of them fail.

A test suite can pass for the wrong reason: a fixture without BatchNorm2d cannot tell train
mode from eval mode, a check that recomputes its expected value with the function under test
agrees with any bug. Each mutant below is a plausible mistake (a wrong mode, a stale score, a
dropped argument) together with the tests meant to catch it. For every mutant this script

1. copies ``repro/``, ``tests/``, ``conf/``, ``pyproject.toml`` (and ``hydra_plugins/``, if any)
   into a fresh temp directory,
2. replaces the mutant's exact old text by its new text (refusing unless the old text occurs
   exactly once, so a mutant that no longer matches the code fails loudly instead of passing),
3. runs ``python -m pytest -q -x -p no:cacheprovider <its tests>`` there, with ``PYTHONPATH``
   pointing at the copy (ahead of the editable install),

after first running all the killing tests once on an unmutated copy, which must pass. It
prints a table (killed / SURVIVED, seconds) and exits non-zero if any mutant survived, the
baseline failed, or a run errored (pytest usage errors, nothing collected) rather than failed.

    .venv/bin/python tools/mutants.py              # all mutants
    .venv/bin/python tools/mutants.py --list       # names, files and killing tests
    .venv/bin/python tools/mutants.py synflow lth  # only mutants whose name contains a word
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: what a copy holds: the package, its tests, the Hydra configs, the project metadata, and Hydra's
#: plugin namespace where the checkout has one (conf/config.yaml names a sweeper that lives there)
COPIED = ("repro", "tests", "conf", "pyproject.toml")
OPTIONAL = ("hydra_plugins",)
#: seconds a single pytest run may take before the mutant counts as killed by a timeout
TIMEOUT = 900

SCORING = "tests/test_scoring_mutants.py"
REGROW = "tests/test_regrow.py"
CONTRACT = "tests/test_contract.py"
BEHAVIOURS = "tests/test_untested_behaviours.py"
LATENCY = "tests/test_export_latency.py"
REPORT_LATENCY = "tests/test_report_latency.py"
SELECTION = "tests/test_report_selection.py"


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


# ----------------------------------------------------------------------------- the machinery


def make_copy(dst: Path) -> None:
    """The package, tests, configs and metadata under ``dst``; ``.cache`` is linked, not copied
    (decoded datasets: tests point REPRO_CACHE_DIR at <copy>/.cache/repro)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in (*COPIED, *(n for n in OPTIONAL if (ROOT / n).exists())):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        else:
            shutil.copy2(src, dst / name)
    (ROOT / ".cache").mkdir(exist_ok=True)
    (dst / ".cache").symlink_to(ROOT / ".cache", target_is_directory=True)


def matched(mutant: Mutant, root: Path) -> str:
    """The text of the mutant's file under ``root``; refuses unless the old text occurs exactly once."""
    text = (root / mutant.file).read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(f"mutant {mutant.name}: the old text occurs {count} times in {mutant.file} "
                         f"(expected exactly once); update tools/mutants.py:\n{mutant.old}")
    return text


def apply(mutant: Mutant, root: Path) -> None:
    """Replace the mutant's old text in the copy under ``root``."""
    (root / mutant.file).write_text(matched(mutant, root).replace(mutant.old, mutant.new))


def environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("REPRO_DATA_DIR", str((ROOT.parent / "shared" / "data").resolve()))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("GIT_PYTHON_REFRESH", "quiet")
    env.pop("MLFLOW_TRACKING_URI", None)  # every test brings its own store
    return env


def check_imports_from(root: Path) -> None:
    """The copy, not the editable install, must be what ``import repro`` finds there."""
    out = subprocess.run([sys.executable, "-c", "import repro; print(repro.__file__)"], cwd=root,
                         env=environment(root), capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"in the copy {root}, 'import repro' found {out}: PYTHONPATH does not win")


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[int, float, str]:
    """pytest in the copy: (exit code, seconds, the tail of its output); a timeout is code -1."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=environment(root), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - start, f"timed out after {TIMEOUT} s"
    return proc.returncode, time.perf_counter() - start, (proc.stdout + proc.stderr)[-3000:]


def first_failure(output: str) -> str:
    """pytest's one-line summary of the first failure (what killed the mutant), shortened."""
    summary = output.split("short test summary info", 1)[-1]
    for line in summary.splitlines():
        if line.startswith(("FAILED tests", "ERROR tests")):
            return line if len(line) <= 160 else line[:157] + "..."
    return ""


def verdict(code: int) -> str:
    """pytest's exit code as a verdict: 1 = a test failed (killed), 0 = all passed (survived)."""
    return {0: "SURVIVED", 1: "killed", -1: "killed (timeout)"}.get(code, f"ERROR (pytest exit {code})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run only mutants whose name contains one of these words")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temp copies (their paths are printed)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or any(w in m.name for w in args.only)]
    if not chosen:
        parser.error(f"no mutant matches {args.only}; --list shows them")
    if args.list:
        for m in chosen:
            print(f"{m.name}\n  {m.file}: {m.why}\n  killed by: {' '.join(m.tests)}")
        return 0

    # Every mutant must still match the code before anything runs (a stale one fails loudly).
    for m in chosen:
        matched(m, ROOT)
    work = Path(tempfile.mkdtemp(prefix="repro-mutants-"))
    started = time.perf_counter()
    try:
        baseline = work / "baseline"
        make_copy(baseline)
        check_imports_from(baseline)
        tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        print(f"baseline: {len(tests)} killing test(s) on the unmutated copy ...", flush=True)
        code, seconds, tail = run_tests(baseline, tests)
        if code != 0:
            print(tail)
            print(f"baseline FAILED (pytest exit {code}, {seconds:.0f} s): the killing tests must pass on the "
                  f"unmutated code before mutants mean anything")
            return 2
        print(f"baseline passed in {seconds:.0f} s", flush=True)

        rows = []
        for m in chosen:
            root = work / m.name
            make_copy(root)
            apply(m, root)
            code, seconds, tail = run_tests(root, m.tests)
            rows.append((m, verdict(code), seconds))
            print(f"  {m.name:<34} {verdict(code):<22} {seconds:5.0f} s  {first_failure(tail)}", flush=True)
            if code not in (0, 1, -1):
                print(tail)
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if args.keep:
            print(f"copies kept under {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    width = max(len(m.name) for m, _, _ in rows)
    print(f"\n| {'mutant':<{width}} | file                        | verdict              | seconds |")
    print(f"|{'-' * (width + 2)}|-----------------------------|----------------------|---------|")
    for m, v, seconds in rows:
        print(f"| {m.name:<{width}} | {m.file:<27} | {v:<20} | {seconds:7.1f} |")
    survived = [m.name for m, v, _ in rows if not v.startswith("killed")]
    total = time.perf_counter() - started
    print(f"\n{len(rows) - len(survived)} of {len(rows)} mutants killed in {total:.0f} s"
          + (f"; not killed: {', '.join(survived)}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
