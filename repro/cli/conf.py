"""The conf/ tree and the Hydra session that :mod:`repro.cli.check` and :mod:`repro.cli.help`
both read: where conf/ is, the groups a user selects from and their options, and Hydra
initialised on conf/ the way ``repro.train``'s ``@hydra.main`` does.

Kept apart so the checker and the help page list groups and options from one place (a
suggestion in an error line and the ``--help`` page can never disagree), and so neither
module imports the other. Importing it registers the schemas with Hydra's ConfigStore.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from repro.config import SCHEMA_GROUP, register_configs

PROG = "repro-train"
#: conf/ beside the package, the directory repro.train hands to Hydra
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
CONFIG_NAME = "config"

#: what each user-facing group decides; the options themselves are read from conf/
GROUP_HELP = {
    "model": "the network",
    "data": "the dataset",
    "pruner": "the pruning method",
    "schedule": "how sparsity rises during training (pmp, gmp)",
    "optim": "optimizer and LR schedule",
    "tracking": "where runs are recorded",
    "experiment": "a cited single-run preset",
    "profile": "a sweep preset, run with -m +profile=NAME",
    "row": "one row of a profile's table, +row=SUB/NAME (profiles sweep them; [n] rows each)",
    "hydra/launcher": "where the jobs of a sweep run (-m)",
}

register_configs()


@contextmanager
def hydra_context() -> Iterator[tuple[Any, Any]]:
    """Hydra initialised on conf/ as repro.train's ``@hydra.main`` would, warnings muted so a
    refusal stays one line; cleared afterwards so Hydra can start afresh."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gh = GlobalHydra.instance()
        if gh.is_initialized():  # re-entered (a hint looked up while checking)
            yield gh, gh.config_loader()
            return
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            gh = GlobalHydra.instance()
            yield gh, gh.config_loader()


def user_groups(loader: Any) -> list[str]:
    """The config groups a user selects from (conf/ and Hydra's launchers), schemas left out."""
    groups = [g for g in loader.list_groups("") if g not in (SCHEMA_GROUP, "hydra")]
    known = [g for g in GROUP_HELP if g in groups or g.startswith("hydra/")]
    return known + sorted(g for g in groups if g not in known)


def group_options(loader: Any, group: str) -> list[str]:
    """Every option of a group, nested ones as ``sub/name`` (``row=mnist/lenet300``); files whose
    name starts with ``_`` are shared parts of options (``row/lenets/_lth_recipe``), not options."""
    options = [name for name in loader.get_group_options(group) if not name.startswith("_")]
    for sub in loader.list_groups(group):
        options += [f"{sub}/{name}" for name in group_options(loader, f"{group}/{sub}")]
    return sorted(options)

