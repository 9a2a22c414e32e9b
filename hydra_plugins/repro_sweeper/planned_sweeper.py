"""``hydra/sweeper=planned`` (conf/hydra/sweeper/planned.yaml): Hydra's basic sweeper whose batches
leave out the jobs that repeat an earlier job's run (see :mod:`repro.sweep_plan` for why).

Imported by Hydra's plugin scan at every start (the front door's too), so it imports nothing
heavy: torch comes in only when a sweep is planned."""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from repro import sweep_plan


class PlannedSweeper(BasicSweeper):
    """The basic sweeper (same cartesian product, same batches, same ``params``) with a plan."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.planner: sweep_plan.Planner | None = None

    def _job_key(self, overrides: Sequence[str]) -> sweep_plan.RunKey | None:
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        return sweep_plan.job_key(cfg)

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        """The next batch without the jobs whose run the sweep already launches."""
        batch = super().get_job_batch()
        if self.planner is None:
            self.planner = sweep_plan.Planner(self._job_key)
        kept, dropped = self.planner.keep(batch)
        sweep_plan.report(len(batch), dropped)
        return kept

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing left to do: planning composed every job of the batch, the left-out ones too,
        which is the whole of the basic sweeper's check (a composition error stops the sweep there)."""
