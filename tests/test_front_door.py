"""repro-train's front door: every mistyped command is refused in one ``error:`` line naming
the fix (exit 2) before anything is written; good commands pass with the configs Hydra
would compose; ``--help`` is generated from conf/ and the schemas.

In process (repro.cli.main(argv), stderr from capsys) so a table of bad inputs stays fast;
one subprocess test drives the installed console script.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from repro import cli
from repro import config as schema

CONF = Path(__file__).resolve().parent.parent / "conf"

#: (argv, text the one error line must contain: the fix, or the suggestion where one exists)
BAD_INPUTS: list[tuple[list[str], str]] = [
    # unknown group options (Hydra's MissingConfigException)
    (["pruner=pmpp"], "did you mean pruner=pmp?"),
    (["+profile=quik"], "did you mean +profile=quick?"),
    (["experiment=pmp_resnet"], "did you mean experiment=pmp_resnet18?"),
    (["model=alexnet"], "model has no option alexnet"),
    (["hydra/launcher=joblibb"], "did you mean hydra/launcher=joblib?"),
    (["+row=mnist/lenet30"], "did you mean +row=mnist/lenet300?"),
    # misspelt keys, with and without +
    (["trainer.epoch=3"], "did you mean trainer.epochs=3?"),
    (["+trainer.epoch=3"], "did you mean trainer.epochs=3?"),
    (["++trainer.epoch=3"], "did you mean trainer.epochs=3?"),
    (["traner.epochs=3"], "did you mean trainer.epochs=3?"),
    (["foo=1"], "the config has no key foo"),
    (["+foo=1"], "+ cannot add a key to the config"),
    (["+pruner.foo=1"], "+ cannot add a key to pruner"),
    (["pruner=pmp", "pruner.rate=0.3"], "pruner.rate belongs to pruner=lth"),
    (["pruner=lth", "sparsity=0.9", "pruner.layer_rates.fc3=0.1"], "add it with +pruner.layer_rates.fc3=0.1"),
    (["trainer={epoch:3}"], "did you mean trainer.epochs?"),
    # + where it does not belong, a group not in the defaults list
    (["+seed=1"], "drop the +: seed=1"),
    (["+pruner=pmp"], "drop the +: pruner=pmp"),
    (["profile=quick"], "add it with +profile=quick"),
    # wrong types
    (["sparsity=abc"], "sparsity takes a number"),
    (["trainer.epochs=1.5"], "trainer.epochs takes a whole number, e.g. trainer.epochs=2"),
    (["trainer.compile=maybe"], "trainer.compile takes true or false"),
    (["optim.milestones=abc"], "optim.milestones takes a list, e.g. optim.milestones=[0.5,0.75]"),
    (["pruner=snip", "pruner.batch_size=x"], "pruner.batch_size takes a whole number or null"),
    (["trainer=3"], "trainer holds keys, not a value"),
    # the command line itself
    (["pmp"], "did you mean pruner=pmp?"),
    (["sparsity=[0.5"], "cannot parse it"),
    (["pruner=pmp,snip"], "add -m"),
    (["--multi-run"], "did you mean --multirun?"),
    (["-m", "--cfg", "job"], "exclude each other"),
    (["data.root=${oc.env:REPRO_NO_SUCH_VARIABLE}"], "cannot resolve its value"),
    # rules across keys (validate)
    (["sparsity=1.0"], "sparsity=1.0 is impossible"),
    (["pruner=pmp", "sparsity=0.9", "schedule.end=1.5"], "past the end of training"),
    (["pruner=pmp", "sparsity=0.5", "schedule.initial_sparsity=0.6"], "exceeds sparsity=0.5"),
    (["optim.warmup_epochs=3", "trainer.epochs=2"], "warm up for at most trainer.epochs=2 epochs"),
    (["pruner=lth", "sparsity=0"], "pruner=lth needs a target"),
    (["pruner=mask_from"], "pruner=mask_from needs pruner.source="),
    (["pruner=lth", "sparsity=0.9", "+pruner.layer_rates.fc3=1.5"], "pruner.layer_rates.fc3=1.5"),
    (["optim.lr=nan"], "not a finite number"),
    (["trainer.device=tpu"], "use auto, cpu or cuda"),
    # sweeps with one bad value
    (["-m", "pruner=pmp,pmpp", "sparsity=0.5,0.9"], "did you mean pruner=pmp?"),
    (["-m", "pruner=pmp,snip", "sparsity=0.5,1.5"], "sparsity=1.5 is impossible"),
    (["-m", "pruner=pmp", "sparsity=0.5", "seed=0,-1"], "seed=-1: use a seed in [0, 2**32)"),
    (["-m", "+profile=quick", "trainer.eval_every=0"], "trainer.eval_every=0: evaluate every N >= 1 epochs"),
    (["-m", "pruner=dense,snip", "pruner.num_batches=0"], "pruner.num_batches=0"),
]


def _pruner_for(key: str) -> list[str]:
    """A pruner whose schema has this knob (``pruner.rate`` -> pruner=lth)."""
    if not key.startswith("pruner."):
        return []
    field = key.split(".", 1)[1]
    for path, cls in schema.SCHEMAS.items():
        if path.startswith("pruner/") and field in {f.name for f in dataclasses.fields(cls)}:
            return [f"pruner={path.split('/')[1]}", "sparsity=0.9"]
    raise AssertionError(f"no pruner schema has {key}")


def _out_of_range(key: str, rng: schema.Range) -> list[str]:
    """Values just outside a stated range, below and above."""
    values = []
    if rng.lo is not None:
        values.append(rng.lo if rng.lo_open else rng.lo - 1)
    if rng.hi is not None:
        values.append(rng.hi if rng.hi_open else rng.hi + 1)
    return [f"{v:g}" if isinstance(v, float) else str(v) for v in values]


RANGE_INPUTS = [(_pruner_for(key) + [f"{key}={value}"], f"{key}={value}: {rng.fix}")
                for key, rng in schema.RANGES.items() for value in _out_of_range(key, rng)]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A fresh cwd and MLflow store URI; handing over to Hydra fails the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    monkeypatch.setenv("REPRO_CKPT_DIR", str(tmp_path / "checkpoints"))

    def handover(argv):
        raise AssertionError(f"{argv} passed the front door")

    monkeypatch.setattr(cli, "handover", handover)
    return tmp_path


def _refused(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    assert captured.out == ""
    return lines[0]


@pytest.mark.parametrize(("argv", "needle"), BAD_INPUTS + RANGE_INPUTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_input_is_refused_in_one_line_before_anything_is_written(argv, needle, sandbox, capsys):
    line = _refused(argv, capsys)
    assert needle in line
    assert "schema_" not in line and "/schema/" not in line
    assert list(sandbox.iterdir()) == []  # no mlflow store, outputs/, multirun/ or checkpoints/


def test_there_are_enough_bad_inputs():
    assert len(BAD_INPUTS) >= 25
    assert len(RANGE_INPUTS) >= len(schema.RANGES)


def test_every_numeric_schema_key_has_a_stated_range():
    """A new numeric knob without a range would slip past the front door."""

    def numeric(cls: type, prefix: str) -> set[str]:
        hints = typing.get_type_hints(cls)
        keys = set()
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            if dataclasses.is_dataclass(kind):
                keys |= numeric(kind, f"{prefix}{f.name}.")
            elif kind in (int, float, int | None, float | None):
                keys.add(prefix + f.name)
        return keys

    keys = numeric(schema.Config, "")
    for path, cls in schema.SCHEMAS.items():
        if path.startswith("pruner/"):
            keys |= numeric(cls, "pruner.")
    assert {"trainer.eval_every", "data.train_subset", "pruner.rounds", "seed"} <= keys
    covered = set(schema.RANGES) | set(schema.RANGES_CHECKED_ELSEWHERE)
    assert keys - covered == set()
    assert covered - keys == set()


GOOD = [
    ["model=lenet300", "data=mnist", "pruner=pmp", "sparsity=0.9", "trainer.epochs=2"],
    ["experiment=pmp_resnet18", "trainer.epochs=1", "sparsity=0.8"],  # the command line wins over a preset
    ["pruner=lth", "sparsity=0.9", "+pruner.layer_rates.fc3=0.1", "pruner.rate=0.3"],
    ["++trainer.epochs=3", "trainer.eval_every=2", "data.train_subset=500"],
    ["hydra.run.dir=/tmp/elsewhere", "hydra/launcher=submitit_local"],
]


@pytest.mark.parametrize("argv", GOOD, ids=" ".join)
def test_good_commands_pass_with_the_config_hydra_composes(argv):
    (cfg,) = cli.check(argv)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        want = compose("config", overrides=argv)
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(want)


def test_a_sweep_is_expanded_as_hydras_basic_sweeper_does():
    configs = cli.check(["-m", "pruner=pmp,snip", "sparsity=0.5,0.9", "trainer.epochs=1"])
    assert sorted((c.pruner.name, c.sparsity) for c in configs) == [("pmp", 0.5), ("pmp", 0.9), ("snip", 0.5), ("snip", 0.9)]
    assert {c.trainer.epochs for c in configs} == {1}
    quick = cli.check(["-m", "+profile=quick"])  # the profile's hydra.sweeper.params: 10 pruners x 5 sparsities
    assert len(quick) == 50 and {c.profile for c in quick} == {"quick"}
    assert len(cli.check(["-m", "+profile=quick", "pruner=pmp"])) == 5  # the command line wins, as in Hydra
    assert len(cli.check(["-m", "hydra/launcher=submitit_local", "pruner=pmp,gmp", "sparsity=0.9"])) == 2


def test_hydra_flags_keep_working():
    assert cli.check(["--info"]) == []
    assert cli.check(["--hydra-help"]) == []
    (cfg,) = cli.check(["--cfg", "job", "trainer.eval_every=0"])  # printing a config checks types, not ranges
    assert cfg.trainer.eval_every == 0
    with pytest.raises(cli.Refused, match="did you mean pruner=pmp"):
        cli.check(["-c", "job", "pruner=pmpp"])


def test_a_good_command_is_handed_to_hydra_unchanged(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "handover", seen.append)
    cli.main(["pruner=pmp", "sparsity=0.9"])
    assert seen == [["pruner=pmp", "sparsity=0.9"]]


def test_schemas_are_not_options_of_the_user_groups():
    with cli.hydra_context() as (_, loader):
        for group in cli.user_groups(loader):
            assert not [o for o in cli.group_options(loader, group) if "schema" in o], group
        assert "schema" not in cli.user_groups(loader)


def test_help_page(capsys):
    cli.main(["--help"])
    page = capsys.readouterr().out
    assert page.startswith("repro-train: ")
    entries: dict[str, str] = {}  # "  group  text" plus its indented continuation lines
    for line in page.split("Groups (")[1].split("Keys (")[0].splitlines()[1:]:
        if line.startswith("  ") and not line.startswith("   "):
            name = line.split()[0]
            entries[name] = line
        elif line.strip():
            entries[name] += " " + line.strip()
    for group in ("model", "data", "pruner", "schedule", "optim", "tracking", "experiment", "profile"):
        listed = {word.rstrip("*") for word in entries[group].replace(",", " ").split()}
        assert {p.stem for p in (CONF / group).glob("*.yaml")} <= listed, group
    assert sum("*" in word for word in entries["pruner"].split()) == 1  # the default, dense*
    for sub in (CONF / "row").iterdir():  # nested options are counted per subgroup
        rows = [f for f in sub.glob("*.yaml") if not f.name.startswith("_")]  # "_" files are shared parts of rows
        assert f"{sub.name}/*[{len(rows)}]" in entries["row"]
    assert "hydra/launcher" in page and "submitit_local" in page
    for key in ("seed=0", "sparsity=0.0", "rerun=false", "trainer.*", "data.*", "pruner.*", "optim.*", "eval_every"):
        assert key in page
    examples = [ln.strip() for ln in page.splitlines() if ln.startswith("  repro-train ")]
    assert len(examples) == 5
    for needle in ("-m pruner=", "-m +profile=quick", "experiment=pmp_resnet18", "hydra/launcher=submitit_local"):
        assert any(needle in ln for ln in examples), needle
    assert "schema" not in page
    assert "mlflow.db" in page and "MLFLOW_TRACKING_URI" in page  # where runs go
    assert max(len(ln) for ln in page.splitlines()) <= 110


def test_examples_on_the_help_page_pass_the_front_door():
    page = cli.help_text()
    for line in page.splitlines():
        if line.startswith("  repro-train "):
            argv = line.split("#")[0].split()[1:]
            assert cli.check(argv), line


def test_the_installed_command_refuses_in_one_line(tmp_path):
    """The console script, end to end: exit 2, one line, nothing written."""
    script = Path(sys.executable).parent / "repro-train"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "repro.cli"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}", "REPRO_CKPT_DIR": str(tmp_path / "ck")}
    proc = subprocess.run([*cmd, "pruner=pmpp", "trainer.epochs=1"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: pruner=pmpp")
    assert "did you mean pruner=pmp?" in proc.stderr
    assert list(tmp_path.iterdir()) == []
