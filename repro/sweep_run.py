"""A multirun as one MLflow parent run, its jobs as children (a Hydra callback).

``repro-train -m ...`` starts a sweep; without this, its jobs are a flat list in the runs table
with nothing to say they belong together. :class:`SweepRun` (registered in conf/config.yaml's
``hydra.callbacks``) opens a parent run tagged ``kind=sweep`` when the multirun starts, with the
sweep's overrides and folder as params, and writes the parent's id to a file in the sweep
folder. Each job reads the file (:func:`parent_of_job`), so the joblib or submitit launchers'
separate processes find it too: a job's run is created as a child of the parent; an LTH chain's
target runs stay children of their chain, which is the job's run. A job skipped because its run
is FINISHED already (from an earlier sweep) cannot move under this parent, so it is tagged
``repro.skipped_by.<sweep id>``, and the parent lists it.

When the multirun ends, the parent gets the job count and a status summary tag
(``FINISHED 3, FAILED 1, skipped 2``) and ends FINISHED, or FAILED if any job failed. An
``atexit`` guard ends it KILLED if the sweep process dies of an exception or Ctrl-C, so the
parent never stays RUNNING; a SIGKILL cannot be caught, and a later sweep with the same folder
does not revive it (it opens its own parent).
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from repro import records as rec

log = logging.getLogger(__name__)

#: the file in the sweep folder that names the parent run (read by every job)
PARENT_FILE = ".repro-sweep.json"


def sweep_id(sweep_dir: str | Path) -> str:
    """A sweep's id: its folder's path below multirun/ (``2026-12-03/06-10-00``), else its name."""
    parts = Path(sweep_dir).parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(sweep_dir)


def parent_of_job(sweep_dir: str | Path | None) -> dict[str, str] | None:
    """The parent written by :class:`SweepRun` for this sweep folder: ``{"run_id", "sweep",
    "uri"}``, or None (a single run, or a sweep without the callback)."""
    if not sweep_dir:
        return None
    path = Path(sweep_dir) / PARENT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summary(statuses: list[str], skipped: int) -> tuple[str, str]:
    """(``FINISHED 2, FAILED 1, skipped 3``, the parent's own status) from the jobs' statuses."""
    counts = collections.Counter(statuses)
    parts = [f"{status} {counts[status]}" for status in sorted(counts)]
    if skipped:
        parts.append(f"skipped {skipped}")
    failed = any(s in ("FAILED", "KILLED") for s in statuses)
    return ", ".join(parts) or "no jobs", "FAILED" if failed else "FINISHED"


class SweepRun(Callback):
    """Hydra callback: one parent run per multirun (see the module docstring)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.client: Any = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.sweep = ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or not OmegaConf.select(config, "tracking.enabled", default=False):
            return
        from repro.tracking import Tracker

        sweep_dir = Path(str(config.hydra.sweep.dir))
        overrides = list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
        try:
            tracker = Tracker(config.tracking.uri, config.tracking.experiment)
        except Exception as exc:  # noqa: BLE001 - each job reports an unusable store itself, in one line
            log.warning("no parent run for this sweep: %s", exc)
            return
        self.client, self.experiment_id, self.sweep = tracker.client, tracker.experiment_id, sweep_id(sweep_dir)
        profile = str(OmegaConf.select(config, "profile", default="") or "")
        run = self.client.create_run(self.experiment_id, run_name=f"sweep {profile} {self.sweep}".replace("  ", " "),
                                     tags={rec.KIND_TAG: rec.KIND_SWEEP, rec.SWEEP_TAG: self.sweep, rec.PROFILE_TAG: profile,
                                           rec.HYDRA_OVERRIDES_TAG: " ".join(overrides)[:5000]})
        self.run_id = run.info.run_id
        self.client.log_param(self.run_id, rec.SWEEP_DIR_PARAM, str(sweep_dir.resolve()))
        self.client.log_param(self.run_id, rec.SWEEP_OVERRIDES_PARAM, " ".join(overrides)[:6000])
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(json.dumps({"run_id": self.run_id, "sweep": self.sweep,
                                                         "uri": tracker.uri}))
        from repro import dashboard

        dashboard.prepare_experiment(self.client, self.experiment_id)  # make ui's view: a group per sweep
        atexit.register(self._guard)
        log.info("sweep %s: parent MLflow run %s", self.sweep, self.run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.run_id is None:
            return
        self.close()

    def close(self, status: str | None = None) -> None:
        """Count the children and the skipped runs, tag the summary, end the parent."""
        if self.run_id is None:
            return
        run_id, self.run_id = self.run_id, None
        children = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{rec.PARENT_RUN_TAG}` = '{run_id}'",
                                           max_results=50_000)
        skipped = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{rec.skipped_by_tag(self.sweep)}` = '1'",
                                          max_results=50_000)
        text, own = summary([c.info.status for c in children], len(skipped))
        self.client.set_tag(run_id, rec.SWEEP_STATUS_TAG, text)
        self.client.log_param(run_id, rec.SWEEP_JOBS_PARAM, str(len(children) + len(skipped)))
        self.client.set_terminated(run_id, status=status or own)
        log.info("sweep %s: %s", self.sweep, text)

    def _guard(self) -> None:
        """At exit: a parent still open (the sweep died before on_multirun_end) ends KILLED."""
        try:
            self.close("KILLED")
        except Exception as exc:  # noqa: BLE001 - at exit, say it and go
            log.warning("could not end the sweep's parent run: %s", exc)
