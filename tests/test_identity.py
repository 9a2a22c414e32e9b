"""Run identity: only non-default, result-relevant values are hashed, so a new defaulted
option orphans nothing; runs recorded under the old whole-config rule are still found."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from repro import records
from repro.config import TrainerConfig, register_configs
from repro.identity import Resolved, Uses, group_identity, legacy_identity, nondefault, run_identity
from repro.train import CONF_DIR, find_existing

register_configs()
CPU = Resolved(device="cpu", precision="fp32", data_source="official")
PRUNED = Uses(sparsity=True, schedule=True, masks=True)
DENSE = Uses(sparsity=False, schedule=False, masks=False)


def make(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_identity_is_the_hash_of_the_nondefault_values_written_out_by_hand():
    """PMP at 90% on the default LeNet-300-100/MNIST: the schema defaults epochs=2, batch 128,
    SGD 0.1 ... drop out; what is left is written here by hand and hashed independently."""
    cfg = make("pruner=pmp", "sparsity=0.9")
    by_hand = {"config": {"model.name": "lenet300", "data.name": "mnist", "pruner.name": "pmp", "sparsity": 0.9},
               "device": "cpu", "precision": "fp32", "data_source": "official"}
    blob = json.dumps(by_hand, sort_keys=True, separators=(",", ":"))
    assert run_identity(cfg, PRUNED, CPU) == hashlib.sha256(blob.encode()).hexdigest()[:16]


#: today's identities, pinned: a change here orphans every FINISHED run and checkpoint of these configs
PINNED = {
    (): "4a33a158a209fa52",
    ("pruner=pmp", "sparsity=0.9"): "ef379be6e66ae34f",
    ("pruner=lth", "pruner.targets=[0.5,0.9]"): "9215e55f308e0485",
    ("experiment=grasp_vgg19",): "072e3fd456ace83b",
}


@pytest.mark.parametrize("overrides", list(PINNED))
def test_pinned_identities(overrides):
    from repro.train import identities, resolve_runtime

    cfg = make(*overrides)
    spec = dataclasses.replace(resolve_runtime(cfg), device=__import__("torch").device("cpu"), precision="fp32",
                               data_source="official")
    assert identities(cfg, spec)[0] == PINNED[overrides]


@dataclasses.dataclass
class TrainerWithANewKnob(TrainerConfig):
    """What a future option looks like: a new field with a default."""

    new_knob: int = 3


def _with_new_knob(cfg, value: int | None = None):
    cfg = cfg.copy()
    values = OmegaConf.to_container(cfg.trainer)
    OmegaConf.set_struct(cfg, False)
    cfg.trainer = OmegaConf.merge(OmegaConf.structured(TrainerWithANewKnob), values)
    if value is not None:
        cfg.trainer.new_knob = value
    return cfg


def test_a_new_defaulted_option_leaves_identities_unchanged_until_it_is_set():
    cfg = make("pruner=pmp", "sparsity=0.9")
    assert "trainer.new_knob" not in nondefault(_with_new_knob(cfg))
    assert run_identity(_with_new_knob(cfg), PRUNED, CPU) == run_identity(cfg, PRUNED, CPU)
    assert run_identity(_with_new_knob(cfg, 4), PRUNED, CPU) != run_identity(cfg, PRUNED, CPU)
    # a config that sets the new option cannot have a run from before it existed
    assert legacy_identity(_with_new_knob(cfg), PRUNED, CPU) == legacy_identity(cfg, PRUNED, CPU)
    assert legacy_identity(_with_new_knob(cfg, 4), PRUNED, CPU) is None


def test_identity_ignores_cosmetics_and_what_the_method_ignores():
    a = make()
    same = make("tracking.uri=http://x", "trainer.progress=log", "data.root=/b", "trainer.checkpoint_dir=y", "rerun=true",
                "trainer.reuse_memory=false", "trainer.threads=1", "trainer.epochs=2", "trainer.export=true")
    assert run_identity(a, DENSE, CPU) == run_identity(same, DENSE, CPU)
    dense_variants = make("sparsity=0.9", "schedule.end=0.9", "pruner.scope=layerwise")
    assert run_identity(a, DENSE, CPU) == run_identity(dense_variants, DENSE, CPU)
    assert run_identity(make("pruner=pmp"), PRUNED, CPU) != run_identity(make("pruner=pmp", "sparsity=0.9"), PRUNED, CPU)


def test_identity_keeps_what_changes_results():
    a = run_identity(make(), DENSE, CPU)
    assert a != run_identity(make("seed=1"), DENSE, CPU)
    assert a != run_identity(make("trainer.epochs=3"), DENSE, CPU)
    assert a != run_identity(make("optim.lr=0.05"), DENSE, CPU)
    assert a != run_identity(make(), DENSE, dataclasses.replace(CPU, device="cuda"))
    assert a != run_identity(make(), DENSE, dataclasses.replace(CPU, data_source="jpeg"))
    assert a != run_identity(make(), DENSE, dataclasses.replace(CPU, precision="bf16"))


def test_group_identity_is_shared_across_seeds_only():
    base = make("pruner=pmp", "sparsity=0.9")
    assert group_identity(base, PRUNED, CPU) == group_identity(make("pruner=pmp", "sparsity=0.9", "seed=2"), PRUNED, CPU)
    assert group_identity(base, PRUNED, CPU) != group_identity(make("pruner=pmp", "sparsity=0.9", "optim.lr=0.05"),
                                                                PRUNED, CPU)


#: hashes computed by the whole-config rule (repro/identity.py at 420137e, run on these configs)
OLD_RULE = {
    (): ("93539bfdef0c5f97", DENSE),
    ("pruner=pmp", "sparsity=0.9"): ("1f07f4f2fd5c4889", PRUNED),
    ("pruner=lth", "pruner.targets=[0.5,0.9]"): ("f1ecd6111643639b", Uses(sparsity=False, schedule=False, masks=True)),
    ("experiment=grasp_vgg19",): ("603ac14d62a684d9", Uses(sparsity=True, schedule=False, masks=True)),
}


@pytest.mark.parametrize("overrides", list(OLD_RULE))
def test_legacy_identity_reproduces_the_old_rule(overrides):
    expected, uses = OLD_RULE[overrides]
    assert legacy_identity(make(*overrides), uses, CPU) == expected


def test_a_run_recorded_under_the_old_identity_is_found_adopted_and_its_checkpoint_kept(mlflow_uri, tmp_path):
    from repro.tracking import Tracker

    cfg = make("pruner=lth", "pruner.targets=[0.5,0.9]", f"trainer.checkpoint_dir={tmp_path}")
    uses = Uses(sparsity=False, schedule=False, masks=True)
    new, legacy = run_identity(cfg, uses, CPU), legacy_identity(cfg, uses, CPU)
    old = Tracker(mlflow_uri, "repro")
    old_run = old.start(legacy, "old-chain", {})
    old.log_child(f"{legacy}:0.5", "old-chain-t0.5", {}, {}, {"final_test_acc": 0.9})
    old.end("FAILED", "killed")
    (tmp_path / f"{legacy}.pt").write_bytes(b"checkpoint")

    tracker = Tracker(mlflow_uri, "repro")
    found = find_existing(tracker, cfg, new, legacy, "g" * 16)
    assert found is not None and found.info.run_id == old_run
    assert found.data.tags[records.IDENTITY_TAG] == new
    assert found.data.tags[records.GROUP_TAG] == "g" * 16  # averaged with runs made after the change
    assert found.data.tags[records.LEGACY_IDENTITY_TAG] == legacy
    child = tracker.find(f"{new}:0.5")
    assert child is not None and child.data.tags[records.LEGACY_IDENTITY_TAG] == f"{legacy}:0.5"
    assert child.data.tags[records.GROUP_TAG] == "g" * 16
    assert (tmp_path / f"{new}.pt").read_bytes() == b"checkpoint" and not (tmp_path / f"{legacy}.pt").exists()
    assert find_existing(tracker, cfg, new, legacy).info.run_id == old_run  # found directly now


def test_no_legacy_lookup_without_a_legacy_identity(mlflow_uri):
    from repro.tracking import Tracker

    assert find_existing(Tracker(mlflow_uri, "repro"), make(), "0" * 16, None) is None



@pytest.mark.parametrize("bad", ["sparsity=1.5", "data.name=mnistt", "trainer.device=tpu"])
def test_a_refused_config_opens_no_store_and_starts_no_run(tmp_path, monkeypatch, capsys, bad):
    """Validation happens before the tracker: nothing is written, not even an empty store."""
    from repro.train import run

    monkeypatch.chdir(tmp_path)
    db = tmp_path / "m.db"
    cfg = make(bad, f"tracking.uri=sqlite:///{db}", f"trainer.checkpoint_dir={tmp_path / 'ck'}")
    with pytest.raises(SystemExit) as exit_:
        run(cfg)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not db.exists() and not (tmp_path / "ck").exists() and list(tmp_path.iterdir()) == []
