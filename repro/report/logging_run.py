"""Logging the report itself as an MLflow run, so a table can be found beside the runs it summarizes.

The run goes to its own experiment, ``<experiment>-reports`` (``repro-reports``), so the training
runs' table and charts hold training runs only; it is tagged ``kind=report``
(:data:`repro.records.KIND_TAG`), which :func:`repro.report.reading.fetch_runs` skips too (reports
logged before they had their own experiment sit among the training runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from repro import records
from repro.report.stats import INCONCLUSIVE, NO_RUNS, NOT_REPRODUCED, REPRODUCED
from repro.tracking import git_info

#: the report run's metric per verdict: claims_reproduced, claims_not_reproduced, ...
CLAIMS_METRIC_PREFIX = "claims_"
#: the same for the PMP-vs-other comparisons: relative_reproduced, ...
RELATIVE_METRIC_PREFIX = "relative_"


def reports_experiment(experiment: str) -> str:
    """The experiment the reports of ``experiment``'s runs are logged to."""
    return f"{experiment}-reports"


def log_report_run(uri: str, experiment: str, profile: str | None, files: Sequence[Path], params: dict[str, Any],
                   claims: pd.DataFrame, relative: pd.DataFrame | None = None) -> str | None:
    """Log the report's files as an MLflow run tagged kind=report (later reports skip it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    source = client.get_experiment_by_name(experiment)
    if source is None:
        return None
    exp = client.get_experiment_by_name(reports_experiment(experiment))
    if exp is None:
        # artifacts beside the training runs' (a SQLite store keeps them in mlartifacts/ next to it)
        where = source.artifact_location.rstrip("/").rsplit("/", 1)[0] if source.artifact_location else None
        client.create_experiment(reports_experiment(experiment),
                                 artifact_location=f"{where}/reports" if where else None)
        exp = client.get_experiment_by_name(reports_experiment(experiment))
    tags = {records.KIND_TAG: records.KIND_REPORT, records.PROFILE_TAG: profile or "(all)", **git_info()}
    run = client.create_run(exp.experiment_id, run_name=f"report-{profile or 'all'}", tags=tags)
    try:
        for k, v in params.items():
            client.log_param(run.info.run_id, k, str(v))
        for prefix, table in ((CLAIMS_METRIC_PREFIX, claims), (RELATIVE_METRIC_PREFIX, relative)):
            if table is None or table.empty:
                continue
            counts = table["verdict"].value_counts()
            for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NO_RUNS):
                client.log_metric(run.info.run_id, f"{prefix}{v.replace(' ', '_')}", float(counts.get(v, 0)))
        for f in files:
            client.log_artifact(run.info.run_id, str(f))
    except Exception:
        client.set_terminated(run.info.run_id, status="FAILED")  # never left RUNNING
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id
