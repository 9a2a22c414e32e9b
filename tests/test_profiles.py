"""Profiles (sweep presets), their rows and the cited experiment presets: everything composes and
validates, each profile yields the intended set of runs, dense and LTH-chain jobs collapse by
run identity, and the quick and paper profiles run end to end on CPU with tiny overrides."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from repro.config import register_configs, validate
from repro.pruning import methods
from repro.train import RunSpec, identities
from tests.conftest import SHARED_DATA, needs_cifar, runs_of

CONF = Path(__file__).resolve().parent.parent / "conf"
FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir() and not (SHARED_DATA / "FashionMNIST" / "raw").is_dir(),
                                   reason="Fashion-MNIST missing (Debian's dataset-fashion-mnist)")
register_configs()

PROFILES = sorted(p.stem for p in (CONF / "profile").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
#: rows a profile sweeps (files starting with "_" are shared parts of rows, not rows)
ROWS = sorted(str(p.relative_to(CONF / "row").with_suffix("")) for p in (CONF / "row").rglob("*.yaml")
              if not p.name.startswith("_"))
GRID = [0.5, 0.8, 0.9, 0.95, 0.98]


def make(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


@functools.cache
def sweep_jobs(profile: str, *args: str) -> tuple[tuple[str, ...], ...]:
    """The job overrides Hydra's basic sweeper makes of `-m +profile=PROFILE ARGS` (same code path)."""
    params = make(f"+profile={profile}", hydra=True).hydra.sweeper.params or {}
    parser = OverridesParser.create()
    overrides = parser.parse_overrides([*(f"{k}={v}" for k, v in params.items()), f"+profile={profile}", *args])
    return tuple(tuple(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch)


@functools.cache
def job_configs(profile: str, *args: str) -> tuple:
    """Every job's composed config (cached, and composed under one Hydra initialisation: tests only read them)."""
    jobs = sweep_jobs(profile, *args)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return tuple(compose("config", overrides=list(job)) for job in jobs)


def identity(cfg) -> str:
    """The run identity repro.train.run computes, through its own code (CPU, fp32, the official data copy)."""
    spec = RunSpec(method_cls=methods.REGISTRY[cfg.pruner.name], device=torch.device("cpu"), precision="fp32",
                   data_source="official")
    return identities(cfg, spec)[0]


def distinct_runs(cfgs) -> dict[str, object]:
    """Identity -> first config: what a sequential sweep trains (later jobs of an identity skip)."""
    out: dict[str, object] = {}
    for cfg in cfgs:
        out.setdefault(identity(cfg), cfg)
    return out


def cell(cfg) -> tuple:
    """(model, method, target sparsities): one row of the table (an LTH chain gives several)."""
    if cfg.pruner.name == "dense":
        return cfg.model.name, "dense", (0.0,)
    targets = tuple(getattr(cfg.pruner, "targets", None) or [cfg.sparsity])
    return cfg.model.name, cfg.pruner.name, targets


# ----------------------------------------------------------------------------- composition


@pytest.mark.parametrize("profile", PROFILES)
def test_every_job_of_every_profile_composes_validates_and_carries_the_tag(profile):
    cfgs = job_configs(profile)
    assert cfgs, f"profile {profile} sweeps nothing"
    for cfg in cfgs:
        validate(cfg)
        assert cfg.profile == profile
        assert methods.REGISTRY[cfg.pruner.name]


@pytest.mark.parametrize("row", ROWS)
def test_every_row_composes_and_validates_in_its_profile(row):
    profile = row.split("/")[0]
    assert profile in PROFILES, f"row {row} lives under conf/row/{profile}/ but there is no profile {profile}"
    assert f"{row}" in " ".join(" ".join(j) for j in sweep_jobs(profile)), f"row {row} is not swept by profile {profile}"
    cfg = make(f"+row={row}", "sparsity=0.9", f"+profile={profile}")
    validate(cfg)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_composes_and_its_values_win_over_the_defaults(experiment):
    cfg = make(f"experiment={experiment}")
    validate(cfg)
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text()
    assert text.startswith("# @package _global_")
    assert re.search(r"(arXiv|ICLR|official)", text), "a preset cites its source"
    raw = yaml.safe_load(text)
    if "sparsity" in raw:  # config.yaml sets sparsity: 0.0 and trainer.epochs: 2; the preset must win
        assert cfg.sparsity == raw["sparsity"]
    assert cfg.trainer.epochs == raw["trainer"]["epochs"]
    assert cfg.trainer.batch_size == raw["trainer"]["batch_size"]
    # a command-line override still wins over the preset
    assert make(f"experiment={experiment}", "trainer.epochs=1").trainer.epochs == 1


def test_experiment_presets_hold_their_cited_settings():
    r18 = make("experiment=pmp_resnet18")
    assert (r18.model.name, r18.data.name, r18.pruner.name, r18.schedule.name, r18.sparsity) == (
        "resnet18", "cifar10", "pmp", "linear", 0.729)
    assert (r18.trainer.epochs, r18.trainer.batch_size, r18.optim.lr, r18.optim.momentum, r18.optim.weight_decay) == (
        160, 128, 0.1, 0.9, 5e-4)
    assert (make("experiment=pmp_vgg19").sparsity, make("experiment=pmp_vgglike").sparsity) == (0.9797, 0.97)
    grasp = make("experiment=grasp_vgg19")
    assert (grasp.model.name, grasp.pruner.name, grasp.sparsity, grasp.trainer.epochs, grasp.pruner.temperature) == (
        "vgg19", "grasp", 0.98, 160, 200.0)
    snip = make("experiment=snip_vgglike")
    assert (snip.model.name, snip.pruner.name, snip.sparsity) == ("vgg_like", "snip", 0.97)
    # LTH Appendix I.3: 45K/5K, batch 128, wd 1e-4, momentum 0.9, 30K iterations, x0.1 at 20K and 25K,
    # Glorot init, LR 0.03 warmed up over 20K iterations; 352 steps an epoch on 45K images at batch 128
    r20 = make("experiment=lth_resnet20")
    assert (r20.model.name, r20.pruner.name, r20.data.val_size, r20.trainer.batch_size, r20.optim.weight_decay,
            r20.optim.momentum, r20.optim.lr, r20.trainer.init, list(r20.pruner.exclude), r20.pruner.exclude_last) == (
        "resnet20", "lth", 5000, 128, 1e-4, 0.9, 0.03, "xavier_normal", ["*downsample*"], True)
    spe = -(-45_000 // 128)
    assert spe == 352 and abs(r20.trainer.epochs * spe - 30_000) < spe
    marks = [round(m * r20.trainer.epochs) * spe for m in r20.optim.milestones]
    assert all(abs(m - t) < spe for m, t in zip(marks, (20_000, 25_000))) and abs(r20.optim.warmup_epochs * spe - 20_000) < spe
    # LTH, Figure 2 and Appendix G: Adam 1.2e-3, batch 60, 50K iterations (55 epochs of 917 steps on 55K
    # images), 5K validation images, 20% of each hidden layer and 10% of the output layer per round
    l300 = make("experiment=lth_lenet300")
    assert (l300.optim.name, l300.optim.lr, l300.optim.lr_schedule, l300.trainer.batch_size, l300.trainer.epochs,
            l300.data.val_size, l300.trainer.init, l300.pruner.rate, dict(l300.pruner.layer_rates)) == (
        "adam", 1.2e-3, "constant", 60, 55, 5000, "xavier_normal", 0.2, {"fc3": 0.1})
    assert 55 * -(-55_000 // 60) >= 50_000 > 54 * -(-55_000 // 60)
    # SNIP, Section 5: SGD 0.1, momentum 0.9, wd 5e-4, batch 100, 10% held out, LR x0.1 at 25K iterations
    s300 = make("experiment=snip_lenet300")
    assert (s300.model.name, s300.optim.name, s300.optim.lr, s300.optim.momentum, s300.optim.weight_decay,
            s300.trainer.batch_size, s300.data.val_size, s300.optim.gamma) == ("lenet300", "sgd", 0.1, 0.9, 5e-4, 100, 6000, 0.1)
    # the LR drops at a whole epoch (540 steps of 100 on 54K images): the one nearest 25K iterations
    drop_epoch = int(s300.optim.milestones[0] * s300.trainer.epochs + 0.5)
    assert drop_epoch * 540 == 24_840 and len(s300.optim.milestones) == 1


def test_lth_chain_targets_are_exactly_3_and_7_rounds_of_lths_per_layer_rates():
    """Zeros after k full rounds, by hand: each round removes round(rate * survivors) per layer
    (fc1 235,200 and fc2 30,000 weights at 20%, fc3 1,000 at 10%): 129,689 after 3, 210,106 after 7."""
    from repro.pruning.masks import pruned_count

    targets = list(make("experiment=lth_lenet300").pruner.targets)
    assert [pruned_count(t, 266_200) for t in targets] == [129_689, 210_106]
    assert [1 - z / 266_200 for z in (129_689, 210_106)] == pytest.approx([0.513, 0.211], abs=5e-4)  # LTH's Pm


def test_lenets_profile_rows_follow_their_recipe_and_never_share_an_identity():
    cfgs = job_configs("lenets")
    assert len(cfgs) == 15 * 3 and {c.seed for c in cfgs} == {0, 1, 2}  # 15 rows (2 cost-matched), 3 seeds
    assert len(distinct_runs(cfgs)) == len(cfgs)  # rows carry their sparsity: safe for a parallel launcher
    lth_recipe = make("experiment=lth_lenet300")
    for cfg in cfgs:
        if cfg.optim.name == "adam":  # LTH's recipe: every key but the method's (and the epochs) equals the preset's
            for key in ("data", "optim", "model"):
                assert cfg[key] == lth_recipe[key], key
            assert {k: v for k, v in cfg.trainer.items() if k != "epochs"} == \
                {k: v for k, v in lth_recipe.trainer.items() if k != "epochs"}
        else:
            assert cfg.trainer.batch_size == 100 and cfg.data.val_size == 6000
    cells = {(c.optim.name, c.pruner.name, c.sparsity, c.trainer.epochs) for c in cfgs}
    # cost-matched PMP, by hand: LTH's chain trains a dense cycle then one cycle per round, 55 epochs each;
    # 48.7% is reached after 3 rounds (4 cycles: 220 epochs), 78.9% after 7 (8 cycles: 440 epochs)
    assert cells == {("sgd", "dense", 0.0, 50), ("sgd", "snip", 0.95, 50), ("sgd", "snip", 0.98, 50),
                     ("sgd", "pmp", 0.95, 50), ("sgd", "pmp", 0.98, 50), ("sgd", "gmp", 0.95, 50),
                     ("sgd", "gmp", 0.98, 50), ("adam", "dense", 0.0, 55), ("adam", "lth", 0.0, 55),
                     ("adam", "pmp", 0.487186, 55), ("adam", "pmp", 0.789279, 55),
                     ("adam", "gmp", 0.487186, 55), ("adam", "gmp", 0.789279, 55),
                     ("adam", "pmp", 0.487186, 220), ("adam", "pmp", 0.789279, 440)}


# ----------------------------------------------------------------------------- what each profile runs


def test_quick_profile_trains_each_method_at_each_sparsity_dense_once_and_one_lth_chain():
    cfgs = job_configs("quick")
    assert len(cfgs) == 10 * 5
    assert {(c.model.name, c.data.name, c.seed, c.profile) for c in cfgs} == {("lenet300", "fashion_mnist", 0, "quick")}
    runs = distinct_runs(cfgs)
    cells = sorted(cell(c) for c in runs.values())
    expected = sorted([("lenet300", "dense", (0.0,)), ("lenet300", "lth", tuple(GRID))]
                      + [("lenet300", m, (s,)) for m in ("pmp", "gmp", "set", "rigl", "snip", "grasp", "synflow", "random")
                         for s in GRID])
    assert cells == expected  # 42 trainings; the other 8 jobs (4 dense, 4 LTH) skip as FINISHED


def test_regrow_profile_compares_the_one_cycle_methods_on_three_seeds():
    cfgs = job_configs("regrow")
    runs = distinct_runs(cfgs)
    assert len(cfgs) == 5 * 2 * 3 and len(runs) == 4 * 2 * 3 + 3  # dense: one run per seed
    cells = {cell(c) for c in runs.values()}
    assert cells == {("lenet300", "dense", (0.0,))} | {("lenet300", m, (s,)) for m in ("pmp", "gmp", "set", "rigl")
                                                       for s in (0.9, 0.98)}
    assert {(c.data.name, c.trainer.epochs, c.trainer.batch_size, c.seed) for c in cfgs} == {
        ("fashion_mnist", 8, 100, s) for s in (0, 1, 2)}


def test_mnist_profile_covers_both_lenets_with_an_lth_chain_on_lenet300_only():
    cfgs = job_configs("mnist")
    runs = distinct_runs(cfgs)
    cells = {cell(c) for c in runs.values()}
    methods_ = ("pmp", "gmp", "snip", "grasp", "synflow", "random")
    expected = ({("lenet300", "dense", (0.0,)), ("lenet5", "dense", (0.0,)), ("lenet300", "lth", tuple(GRID))}
                | {(m, p, (s,)) for m in ("lenet300", "lenet5") for p in methods_ for s in GRID})
    assert cells == expected and len(runs) == len(expected)
    assert {c.data.name for c in cfgs} == {"mnist"}
    recipe = {(c.trainer.batch_size, c.optim.name, c.optim.lr, c.optim.momentum, c.optim.weight_decay) for c in cfgs}
    assert recipe == {(100, "sgd", 0.1, 0.9, 5e-4)}  # SNIP's LeNet recipe, shared by every row
    assert {c.model.name: c.trainer.epochs for c in cfgs} == {"lenet300": 30, "lenet5": 8}
    chain = next(c for c in runs.values() if c.pruner.name == "lth")
    assert dict(chain.pruner.layer_rates) == {"fc3": 0.1}


def test_paper_profile_runs_the_papers_rows_and_baselines_on_three_seeds():
    cfgs = job_configs("paper")
    runs = distinct_runs(cfgs)
    assert len(runs) == len(cfgs) == 15 * 3  # no job collapses: every row is a distinct run
    assert {c.seed for c in cfgs} == {0, 1, 2}
    cells = {cell(c) for c in runs.values()}
    assert cells == {
        ("resnet18", "dense", (0.0,)), *(("resnet18", "pmp", (s,)) for s in (0.7, 0.729, 0.75, 0.8, 0.85)),
        ("vgg_like", "dense", (0.0,)), ("vgg_like", "pmp", (0.97,)), ("vgg_like", "snip", (0.97,)),
        ("vgg19", "dense", (0.0,)), ("vgg19", "pmp", (0.9797,)), ("vgg19", "grasp", (0.98,)), ("vgg19", "grasp", (0.9797,)),
        ("resnet20", "dense", (0.0,)), ("resnet20", "lth", (0.737856,)),
    }
    assert {c.data.name for c in cfgs} == {"cifar10"}
    cifar = [c for c in cfgs if c.model.name != "resnet20"]
    assert {(c.trainer.epochs, c.trainer.batch_size, c.optim.lr, c.optim.weight_decay) for c in cifar} == {(160, 128, 0.1, 5e-4)}


def test_command_line_overrides_reach_every_job_of_a_profile():
    cfgs = job_configs("paper", "seed=0", "trainer.epochs=1", "model.width=0.0625")
    assert len(cfgs) == 15
    assert {(c.seed, c.trainer.epochs, c.model.width) for c in cfgs} == {(0, 1, 0.0625)}


def test_dense_and_chain_jobs_share_an_identity_across_sparsities_and_pruned_jobs_do_not():
    cfgs = job_configs("quick")
    by_method: dict[str, set[str]] = {}
    for c in cfgs:
        by_method.setdefault(c.pruner.name, set()).add(identity(c))
    assert len(by_method["dense"]) == 1 and len(by_method["lth"]) == 1
    assert all(len(ids) == 5 for m, ids in by_method.items() if m not in ("dense", "lth"))


# ----------------------------------------------------------------------------- end to end on CPU

TINY = ("trainer.device=cpu", "trainer.epochs=1", "data.test_subset=256", "trainer.save_model=false")


def _finished(uri: str):
    runs = runs_of(uri)
    assert runs, "no runs recorded"
    bad = [(r.info.run_name, r.info.status, r.data.tags.get("repro.failure", "")) for r in runs if r.info.status != "FINISHED"]
    assert not bad, f"runs not FINISHED: {bad}"
    return runs


def _cells(runs) -> set[tuple]:
    out = set()
    for r in runs:
        if r.data.tags.get("kind") == "chain":
            continue
        s = 0.0 if r.data.tags["method"] == "dense" else round(float(r.data.params["sparsity"]), 6)
        out.add((r.data.tags["model"], r.data.tags["method"], s))
    return out


@pytest.mark.slow
@needs_fashion  # ~40 s on a 2-core machine (85-185 s when other jobs load it)
def test_quick_profile_end_to_end_with_tiny_overrides(train_cli, tmp_path):
    proc = train_cli("-m", "+profile=quick", *TINY, "data.train_subset=300", timeout=900)
    # the planned sweeper launches dense and the LTH chain once: their 4 + 4 other jobs are left out
    assert (proc.stdout + proc.stderr).count("not launched") == 8
    runs = _finished(train_cli.uri)
    assert {r.data.tags["profile"] for r in runs} == {"quick"}
    expected = {("lenet300", "dense", 0.0)} | {("lenet300", m, s) for m in ("pmp", "gmp", "set", "rigl", "snip", "grasp",
                                                                             "synflow", "random", "lth") for s in GRID}
    assert _cells(runs) == expected

    from repro import report

    rep = report.make_report(["--tracking-uri", train_cli.uri, "--profile", "quick", "--out", str(tmp_path / "res"),
                              "--no-log"])
    assert (tmp_path / "res" / "table.md").is_file()
    assert len(rep.groups) == len(expected) and not len(rep.left_out)


def _tiny_cifar(root: Path, train: int, test: int) -> Path:
    """A CIFAR-10 JPEG copy of `train` and `test` images per class (links into the offline mirror).

    data.train_subset takes the first N images, and the JPEG copy is stored class by class: a subset would hold
    one class, and GraSP needs 10 samples of every class."""
    src = SHARED_DATA / "cifar10-jpeg"
    for split, n in (("train", train), ("test", test)):
        for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            dst = root / "cifar10-jpeg" / split / cls.name
            dst.mkdir(parents=True)
            for f in sorted(cls.iterdir())[:n]:
                (dst / f.name).symlink_to(f)
    return root


@pytest.mark.slow
@needs_cifar  # ~25 s on a loaded 2-core machine
def test_paper_profile_starts_and_finishes_on_cpu_with_tiny_overrides(train_cli, tmp_path):
    root = _tiny_cifar(tmp_path / "data", train=20, test=10)
    # LTH's ResNet recipe holds out 5,000 images and warms up for 57 epochs: neither fits 1 epoch of 200 images
    proc = train_cli("-m", "+profile=paper", "seed=0", *TINY, "model.width=0.0625", f"data.root={root}",
                     f"data.cache_dir={tmp_path / 'cache'}", "data.val_size=0", "optim.warmup_epochs=0", timeout=1800)
    assert "skipping" not in proc.stdout + proc.stderr
    runs = _finished(train_cli.uri)
    assert {r.data.tags["profile"] for r in runs} == {"paper"}
    assert {r.data.tags["data_source"] for r in runs} == {"jpeg"}
    assert _cells(runs) == {
        ("resnet18", "dense", 0.0), *(("resnet18", "pmp", s) for s in (0.7, 0.729, 0.75, 0.8, 0.85)),
        ("vgg_like", "dense", 0.0), ("vgg_like", "pmp", 0.97), ("vgg_like", "snip", 0.97),
        ("vgg19", "dense", 0.0), ("vgg19", "pmp", 0.9797), ("vgg19", "grasp", 0.98), ("vgg19", "grasp", 0.9797),
        ("resnet20", "dense", 0.0), ("resnet20", "lth", 0.737856),
    }
