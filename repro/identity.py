"""Run identity: a hash of the values that differ from the schema defaults.

Two commands that would produce the same numbers get the same identity, so a sweep can
skip finished runs and resume crashed ones, whatever their output folders or tracking
URIs. As in open_lth, only values that differ from the schema's defaults (the dataclasses
in :mod:`repro.config`) enter the hash: adding a new option with a default leaves every
existing identity, FINISHED run and checkpoint as it was. Dropped as well: cosmetic keys
(paths, tracking, progress display, checkpoint cadence) and keys the method ignores (a
dense run does not vary with ``sparsity``). Always kept: the resolved device type,
precision and data source, which the config alone does not fix.

Stores written before this rule hashed the whole resolved config;
:func:`legacy_identity` recomputes that hash so their runs are still found (train.py
re-tags them with the new identity the first time it meets them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: keys that never change a result (paths, display, tracking, cadence of checkpoints)
COSMETIC = {
    "tracking",
    "rerun",
    "profile",
    "data.root",
    "data.cache_dir",
    "data.download",
    "trainer.progress",
    "trainer.threads",
    "trainer.reuse_memory",
    "trainer.checkpoint_every",
    "trainer.checkpoint_dir",
    "trainer.save_model",
    "trainer.export",  # writes a compressed copy of the weights: the result is the same
    "trainer.eval_batch_size",
    "trainer.compile",
}

#: replaced by their resolved values (``auto`` means different things on different machines)
RESOLVED = {"trainer.device", "trainer.precision", "data.source"}

#: always hashed, default or not: which network, data and method a run is
ALWAYS = {"model.name", "data.name", "pruner.name"}


@dataclasses.dataclass(frozen=True)
class Uses:
    """Which parts of the config a method reads (the rest is dropped from its identity)."""

    sparsity: bool
    schedule: bool
    masks: bool


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Facts the identity needs that the config alone does not fix."""

    device: str
    precision: str
    data_source: str


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_list(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _default_of(node: DictConfig, key: str) -> tuple[bool, Any]:
    """(has a default, the default) of ``key`` in the dataclass schema behind ``node``."""
    schema = OmegaConf.get_type(node)
    if schema is None or not dataclasses.is_dataclass(schema):
        return False, None
    for f in dataclasses.fields(schema):
        if f.name == key:
            if f.default is not dataclasses.MISSING and f.default != "???":
                return True, f.default
            if f.default_factory is not dataclasses.MISSING:
                made = f.default_factory()
                return (not dataclasses.is_dataclass(made)), made
            return False, None
    return False, None


def nondefault(cfg: DictConfig, prefix: str = "") -> dict[str, Any]:
    """Every leaf of ``cfg`` whose value differs from its schema default, by dotted key.

    Leaves without a default (``MISSING`` in the schema, or keys of a node without a
    schema) always count as non-default.
    """
    out: dict[str, Any] = {}
    for key in cfg.keys():
        dotted = f"{prefix}{key}"
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and OmegaConf.get_type(child) is not dict:
            out.update(nondefault(child, dotted + "."))
            continue
        value = _plain(OmegaConf.select(cfg, str(key), throw_on_missing=False))
        has_default, default = _default_of(cfg, str(key))
        if not has_default or value != default:
            out[dotted] = value
    return out


def _relevant(dotted: str, uses: Uses) -> bool:
    if dotted == "hydra" or dotted.startswith("hydra."):
        return False
    if any(dotted == c or dotted.startswith(c + ".") for c in COSMETIC | RESOLVED):
        return False
    if dotted == "sparsity":
        return uses.sparsity
    if dotted.startswith("schedule."):
        return uses.schedule
    if dotted.startswith("pruner.") and dotted != "pruner.name":
        return uses.masks
    return True


def normalized(cfg: DictConfig, uses: Uses, resolved: Resolved, *, with_seed: bool = True) -> dict[str, Any]:
    """The result-relevant, non-default part of ``cfg`` plus the resolved facts, as plain data."""
    values = {k: v for k, v in nondefault(cfg).items() if _relevant(k, uses)}
    for key in ALWAYS:
        values[key] = _plain(OmegaConf.select(cfg, key))
    if not with_seed:
        values.pop("seed", None)
    return {"config": values, "device": resolved.device, "precision": resolved.precision,
            "data_source": resolved.data_source}


def _hash(tree: Any) -> str:
    blob = json.dumps(tree, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_identity(cfg: DictConfig, uses: Uses, resolved: Resolved) -> str:
    """A short, stable hash naming the run: same result-relevant config, same identity."""
    return _hash(normalized(cfg, uses, resolved))


def group_identity(cfg: DictConfig, uses: Uses, resolved: Resolved) -> str:
    """The identity without the seed: the runs a report averages over."""
    return _hash(normalized(cfg, uses, resolved, with_seed=False))


# ----------------------------------------------------------------------------- the old rule

#: every key the schemas had when identities hashed the whole config (frozen: never edit).
#: A config that sets a key outside this list to a non-default value cannot have a run
#: from that time, so no legacy identity is computed for it.
LEGACY_KEYS = frozenset({
    "data.augment", "data.cache_dir", "data.download", "data.name", "data.root", "data.source", "data.test_subset",
    "data.train_subset", "data.val_size", "model.name", "model.width", "optim.gamma", "optim.lr", "optim.lr_schedule",
    "optim.milestones", "optim.momentum", "optim.name", "optim.nesterov", "optim.warmup_epochs", "optim.weight_decay",
    "profile", "pruner.batch_size", "pruner.exclude_first", "pruner.exclude_last", "pruner.finetune_epochs",
    "pruner.float64", "pruner.init", "pruner.layer_rates", "pruner.name", "pruner.num_batches", "pruner.num_iters",
    "pruner.rate", "pruner.rewind_step", "pruner.rounds", "pruner.samples_per_class", "pruner.scope", "pruner.shuffle",
    "pruner.source", "pruner.targets", "pruner.temperature", "rerun", "schedule.end", "schedule.initial_sparsity",
    "schedule.name", "schedule.start", "schedule.update_frequency", "schedule.update_unit", "seed", "sparsity",
    "tracking.enabled", "tracking.experiment", "tracking.uri", "trainer.batch_size", "trainer.channels_last",
    "trainer.checkpoint_dir", "trainer.checkpoint_every", "trainer.compile", "trainer.device", "trainer.epochs",
    "trainer.eval_batch_size", "trainer.eval_every", "trainer.init", "trainer.precision", "trainer.progress",
    "trainer.reuse_memory", "trainer.save_model", "trainer.threads",
})


def _leaves(tree: Any, prefix: str = "") -> list[str]:
    if isinstance(tree, dict):
        return [leaf for k, v in tree.items() for leaf in _leaves(v, f"{prefix}{k}.")] or [prefix[:-1]]
    return [prefix[:-1]]


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        node = node.get(p, {})
    if isinstance(node, dict):
        node.pop(leaf, None)


def legacy_identity(cfg: DictConfig, uses: Uses, resolved: Resolved) -> str | None:
    """The identity the whole-config rule gave this config, or None if no run of that time can match.

    Keys added to the schemas since then are left out of the hash; if one of them holds a
    non-default value, the config is new and there is nothing to find.
    """
    changed = {k for k in nondefault(cfg) if not k.startswith("hydra.") and k != "hydra"}
    # tracking.* never changes a result (and is dropped from the hash below): a new tracking key
    # set to a non-default value does not make the config new
    if any(k not in LEGACY_KEYS and not k.startswith(("pruner.layer_rates.", "tracking.")) for k in changed):
        return None
    tree = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(tree, dict)
    tree.pop("hydra", None)
    for leaf in _leaves(tree):
        if leaf not in LEGACY_KEYS and not leaf.startswith("pruner.layer_rates"):
            _drop(tree, leaf)
    for key in COSMETIC:
        _drop(tree, key)
    if not uses.sparsity:
        tree.pop("sparsity", None)
    if not uses.schedule:
        tree.pop("schedule", None)
    if not uses.masks:
        tree["pruner"] = {"name": tree["pruner"]["name"]}
    tree["trainer"]["device"] = resolved.device
    tree["trainer"]["precision"] = resolved.precision
    tree["data"]["source"] = resolved.data_source
    return _hash(tree)
