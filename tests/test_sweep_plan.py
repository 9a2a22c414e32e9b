"""A sweep planned before launch (issue 22): jobs that are the same run collapse to one, distinct
runs all launch, and a parallel (joblib) sweep records each identity once. Expected positions
are written by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins

from repro.config import register_configs
from repro.sweep_plan import Planner, RunKey, job_key
from tests.conftest import needs_mnist, runs_of

CONF = Path(__file__).resolve().parent.parent / "conf"
PLANNED = "hydra_plugins.repro_sweeper.planned_sweeper.PlannedSweeper"
register_configs()


def composed(*overrides: str):
    """A job's config as the sweeper composes it (with the hydra node); data need not exist here."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["data.download=true", *overrides], return_hydra_config=True)


def plan(jobs: list[list[str]]) -> tuple[list[list[str]], dict[int, int]]:
    kept, dropped = Planner(lambda job: job_key(composed(*job))).keep(jobs)
    return kept, {d.position: d.same_as for d in dropped}


def test_the_planned_sweeper_is_the_default_and_hydra_knows_the_plugin():
    assert composed().hydra.sweeper._target_ == PLANNED
    assert PLANNED in Plugins.instance().class_name_to_class


def test_dense_and_an_lth_chain_across_a_sparsity_grid_collapse_and_pmp_stays():
    jobs = [["pruner=dense", "sparsity=0.5"], ["pruner=dense", "sparsity=0.9"], ["pruner=pmp", "sparsity=0.5"],
            ["pruner=pmp", "sparsity=0.9"], ["pruner=lth_chain", "sparsity=0.5"], ["pruner=lth_chain", "sparsity=0.9"],
            ["pruner=dense", "sparsity=0.98"]]
    kept, dropped = plan(jobs)
    assert kept == [jobs[0], jobs[2], jobs[3], jobs[4]]
    assert dropped == {1: 0, 5: 4, 6: 0}


def test_seeds_and_stores_keep_their_own_jobs():
    jobs = [["pruner=dense", "seed=0"], ["pruner=dense", "seed=1"], ["pruner=dense", "seed=0", "tracking=none"],
            ["pruner=dense", "seed=0", "sparsity=0.9"]]
    kept, dropped = plan(jobs)
    assert kept == jobs[:3]
    assert dropped == {3: 0}


def test_the_same_identity_in_another_profile_is_another_job():
    """It must join that profile (train.py tags a reused run), which a left-out job would not do."""
    mine, other = composed("pruner=dense"), composed("pruner=dense")
    other.profile = "other"
    assert job_key(mine).identity == job_key(other).identity
    assert job_key(mine) != job_key(other)


def test_positions_and_first_runs_carry_over_batches():
    keys = {"a": RunKey("i1", "p", "s"), "b": RunKey("i2", "p", "s"), "c": None}
    planner = Planner(lambda job: keys[job[0]])
    assert planner.keep([["a"], ["b"], ["c"]]) == ([["a"], ["b"], ["c"]], [])
    kept, dropped = planner.keep([["c"], ["b"], ["a"]])
    assert kept == [["c"]]  # no identity: launched, never dropped
    assert [(d.position, d.same_as, d.identity) for d in dropped] == [(4, 1, "i2"), (5, 0, "i1")]
    assert dropped[0].message().startswith("job 4: same run as job 1 (identity i2), not launched")


@pytest.mark.slow
@needs_mnist
def test_a_two_job_joblib_sweep_records_each_identity_once(train_cli):
    tiny = ("model=lenet300", "data=mnist", "trainer.epochs=1", "data.train_subset=500", "data.test_subset=500",
            "trainer.save_model=false", "hydra.sweep.dir=sweep")
    proc = train_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *tiny, "pruner=dense,pmp",
                     "sparsity=0.5,0.9")
    out = proc.stdout + proc.stderr
    assert "job 1: same run as job 0" in out and "is launching 3 jobs" in out
    runs = runs_of(train_cli.uri)
    assert sorted((r.data.tags["method"], r.data.params["sparsity"]) for r in runs) == [
        ("dense", "0.5"), ("pmp", "0.5"), ("pmp", "0.9")]
    assert len({r.data.tags["repro.identity"] for r in runs}) == 3
    assert all(r.info.status == "FINISHED" and r.data.tags["repro.threads"] for r in runs)
