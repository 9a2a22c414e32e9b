"""The named bugs of issue 16 (the seams of regrowing methods, SET and RigL) for ``tools/mutants.py``,
as plain tuples (name, file, old text, new text, killing tests, why): kept apart so that the
mutant list stays a readable size."""

REGROW = "tests/test_regrow.py"
CONTRACT = "tests/test_contract.py"

REGROW_MUTANTS: tuple[tuple, ...] = (
    (
        "erk-never-dense", "repro/pruning/density.py",
        "        if not over:",
        "        if True:",
        (f"{REGROW}::test_erk_counts_of_a_two_layer_mlp_by_hand",),
        "ERK hands a layer a density above 1 instead of keeping it dense and solving again",
    ),
    (
        "update-resets-grown-only", "repro/pruning/masks.py",
        "            self.reset_optimizer_state(optimizer, [d | g for d, g in zip(dropped, grown)])",
        "            self.reset_optimizer_state(optimizer, grown)",
        (f"{REGROW}::test_update_revives_and_resets_state_at_every_dropped_and_grown_position",),
        "a dropped weight keeps its momentum / Adam moments",
    ),
    (
        "grow-excludes-just-dropped", "repro/pruning/regrow.py",
        "    grown = select_topk(grow_score, 1.0 - kept, n - k)",
        "    grown = select_topk(grow_score, 1.0 - mask, n - k)",
        (f"{REGROW}::test_drop_and_grow_moves_floor_f_active_per_layer",),
        "growth only among weights inactive before the update (RigL's code may regrow a just-dropped one)",
    ),
    (
        "monotone-never-checked", "repro/engine/loop.py",
        "        if not self.method.monotone:\n            return",
        "        if True:\n            return",
        (f"{REGROW}::test_a_monotone_method_that_revives_a_weight_is_stopped",),
        "a method declared monotone revives weights unnoticed",
    ),
    (
        "registry-takes-duplicates", "repro/pruning/methods.py",
        "    if name in REGISTRY and REGISTRY[name] is not cls:",
        "    if False:",
        (f"{REGROW}::test_the_registry_refuses_a_taken_name_and_a_missing_one",),
        "a second class named pmp silently replaces PMP",
    ),
    (
        "dense-gradient-steps-free", "repro/cost.py",
        "        total += (dense_forward - sparse_forward) * batch_size",
        "        total += 0.0",
        (f"{REGROW}::test_a_dense_gradient_step_costs_f_dense_minus_f_sparse_more",),
        "RigL's dense-gradient steps costed as sparse ones",
    ),
    (
        "sgd-update-unmasked", "repro/optim.py",
        "                p.addcmul_(mask, d, value=-lr)",
        "                p.add_(d, alpha=-lr)",
        (f"{CONTRACT}::test_a_method_meets_the_contract[pmp]",),
        "SGD moves masked weights off zero between mask updates",
    ),
    (
        "rigl-reads-masked-gradients", "repro/engine/loop.py",
        "            method.before_optimizer_step(self.ctx, step + 1)  # dense gradients: RigL reads them here",
        "            masks.mask_grads() if mask_grads else None; method.before_optimizer_step(self.ctx, step + 1)",
        (f"{REGROW}::test_rigl_grows_where_the_dense_gradient_of_the_steps_batch_is_largest",),
        "the hook runs after Adam's gradients are masked: RigL grows by zeros, i.e. by position",
    ),
    (
        "set-grows-zeros", "repro/pruning/regrow.py",
        '        if self.grow_init == "init":',
        "        if False:",
        (f"{REGROW}::test_grown_weights_start_as_the_method_says[set]",),
        "SET's grown weights start at 0.0 instead of a fresh draw of the initialisation",
    ),
    (
        "resume-forgets-dense-gradient-steps", "repro/engine/loop.py",
        '        self.method.dense_gradient_steps = tuple(int(s) for s in cost.get("dense_gradient_steps", ()))',
        "        pass",
        (f"{CONTRACT}::test_a_method_crashed_mid_epoch_resumes_to_the_uninterrupted_numbers[rigl]",),
        "a resumed RigL run loses the dense-gradient steps before the crash from its cost",
    ),
)
