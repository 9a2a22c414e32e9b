"""A sweep planned before it is launched (issue 22): jobs that are the same run collapse to one.

Dense training and an LTH chain ignore ``sparsity`` (it is not in their run identity), so a
profile that crosses methods with a sparsity grid holds several jobs per such run. Run one
after another, the later ones find the first FINISHED and skip; run side by side (joblib),
they would all train the same run at once. The planned sweeper
(``hydra/sweeper=planned``, :mod:`hydra_plugins.repro_sweeper`, the default in
conf/config.yaml) composes every job of a batch before launching it, computes the job's run
identity as :func:`repro.train.run` will, and leaves out each job whose run an earlier job of
the sweep already launches, with one log line per job left out. Every profile can then run
with a parallel launcher.

"The same run" is the same identity recorded in the same place for the same profile: the
profile and the tracking store are not in the identity, and a job of another profile or
store still has its own work to do (join the profile, record the run there).

A job whose identity cannot be computed here (a config the job itself will refuse, a data
copy this process cannot see) is launched as it is: planning never stops a job that would
have run, it only saves duplicates.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


class RunKey(NamedTuple):
    """What makes two jobs the same run: identity, profile, where it is recorded."""

    identity: str
    profile: str
    store: str


@dataclasses.dataclass(frozen=True)
class Dropped:
    """A job left out: its place in the sweep, the earlier job that runs it, and the identity."""

    position: int
    same_as: int
    identity: str
    overrides: tuple[str, ...]

    def message(self) -> str:
        return (f"job {self.position}: same run as job {self.same_as} (identity {self.identity}), not launched"
                f" [{' '.join(self.overrides)}]")


class Planner:
    """Remembers which runs a sweep launches, across its batches; positions count every job of the
    sweep in the basic sweeper's order (0-based), launched or not."""

    def __init__(self, key_of: Callable[[Sequence[str]], RunKey | None]) -> None:
        self.key_of = key_of
        self.first: dict[RunKey, int] = {}
        self.position = 0

    def keep(self, batch: Sequence[Sequence[str]]) -> tuple[list[list[str]], list[Dropped]]:
        """The jobs of ``batch`` to launch, in order, and the ones left out."""
        kept: list[list[str]] = []
        dropped: list[Dropped] = []
        for job in batch:
            key = self.key_of(job)
            if key is not None and key in self.first:
                dropped.append(Dropped(self.position, self.first[key], key.identity, tuple(job)))
            else:
                if key is not None:
                    self.first[key] = self.position
                kept.append(list(job))
            self.position += 1
        return kept, dropped


def job_key(cfg: DictConfig) -> RunKey | None:
    """The run a composed job config (with its ``hydra`` node) stands for, computed as
    :func:`repro.train.run` computes it; None if that fails here (the job then runs and reports)."""
    from repro.train import identities, resolve_runtime  # torch: only once a sweep is planned

    task = copy.deepcopy(cfg)
    with open_dict(task):
        task.pop("hydra", None)
    try:
        identity = identities(task, resolve_runtime(task))[0]
        store = f"{task.tracking.uri}#{task.tracking.experiment}" if task.tracking.enabled else "none"
        return RunKey(identity, str(task.profile), store)
    except Exception as exc:  # noqa: BLE001 - planning only saves duplicates; the job reports its own error
        log.debug("no identity for a job (%s): launched as it is", exc)
        return None


def report(total: int, dropped: Sequence[Dropped]) -> None:
    """One line per job left out, then what is launched (the launcher numbers those from 0)."""
    for d in dropped:
        log.info(d.message())
    if dropped:
        log.info("planned sweep: %d jobs, %d launched, %d left out as duplicates (launched jobs are numbered "
                 "from 0 below)", total, total - len(dropped), len(dropped))
