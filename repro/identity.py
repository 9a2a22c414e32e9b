"""Run identity: a hash of the config after dropping what cannot change the result.

Two commands that would produce the same numbers get the same identity, so a sweep can
skip finished runs and resume crashed ones, whatever their output folders or tracking
URIs. Dropped: cosmetic keys (paths, tracking, progress display, checkpoint cadence)
and keys the method ignores (a dense run does not vary with ``sparsity``). Kept: all
that changes results, including the resolved device type, precision and data source.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

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
    "trainer.eval_batch_size",
    "trainer.compile",
}


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for p in parents:
        node = node.get(p, {})
    if isinstance(node, dict):
        node.pop(leaf, None)


def normalized(cfg: DictConfig, *, uses_sparsity: bool, uses_schedule: bool, uses_masks: bool,
               device: str, precision: str, data_source: str) -> dict[str, Any]:
    """The result-relevant part of ``cfg`` as plain data."""
    tree = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(tree, dict)
    tree.pop("hydra", None)
    for key in COSMETIC:
        _drop(tree, key)
    if not uses_sparsity:
        tree.pop("sparsity", None)
    if not uses_schedule:
        tree.pop("schedule", None)
    if not uses_masks:
        tree["pruner"] = {"name": tree["pruner"]["name"]}
    tree["trainer"]["device"] = device
    tree["trainer"]["precision"] = precision
    tree["data"]["source"] = data_source
    return tree


def run_identity(normalized_cfg: dict[str, Any]) -> str:
    """A short, stable hash of a normalised config."""
    blob = json.dumps(normalized_cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
