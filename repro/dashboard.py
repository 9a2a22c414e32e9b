"""``make ui``: the MLflow UI opened where a researcher starts, on the runs table with our columns.

Two findings in MLflow 3.17's UI bundle (``mlflow/server/js/build/static/js``) decide the landing:

- Whether an experiment opens on the GenAI overview (traces, token usage) or on the runs table is
  the UI's *workflow type*, not the experiment tag ``mlflow.experimentKind``: with the workflow
  switch on (the default), the tag is ignored and the type comes from the URL parameter
  ``workflowType`` (``genai`` | ``machine_learning``), else the browser's local storage, else
  ``genai``. So the link carries ``workflowType=machine_learning``.
- The runs table's columns, expanded parents and sort live in the browser (local storage), except
  for a *shared view*: the experiment tag ``mlflow.sharedViewState.<key>`` holds the view as JSON
  and the URL parameter ``viewStateShareKey=<key>`` applies it. We write that tag (the columns of
  :data:`COLUMNS`, grouped by sweep) whenever a run or a sweep starts, and
  the printed link names it. Column ids are ``params.`key```, ``metrics.`key```, ``tags.`key```.

The server runs lean: one worker (``--workers 1``) and MLflow's job runner off
(``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``), enough for one person on a small machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from repro import records as rec

#: the share key of our saved view (experiment tag mlflow.sharedViewState.<key>)
VIEW_KEY = "repro-runs"
SHARED_VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
#: the experiment kind MLflow's own clients set for training experiments (shown, not obeyed, by 3.17)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def _col(kind: str, key: str) -> str:
    """A column id of the runs table, as MLflow's UI spells it (``params.`seed```)."""
    return f"{kind}.`{key}`"


#: the comparison columns: method, model, dataset, target sparsity, seed; final accuracy (%),
#: measured sparsity and training cost (the UI groups them as params, metrics, tags)
COLUMNS: tuple[str, ...] = (
    _col("tags", rec.METHOD_TAG), _col("tags", rec.MODEL_TAG), _col("tags", rec.DATASET_TAG),
    _col("params", rec.SPARSITY_PARAM), _col("params", rec.SEED_PARAM),
    _col("metrics", rec.FINAL_TEST_ACC), _col("metrics", rec.FINAL_SPARSITY), _col("metrics", rec.COST_TRAIN_FLOPS),
)


def view_state() -> dict[str, Any]:
    """The saved view: newest runs first, our columns, the table (not the charts), and the runs
    grouped by sweep (:data:`repro.records.SWEEP_TAG`): a group per sweep, open, holding its
    jobs and its parent run, with the jobs' means on the group's row. (Expanding the parent run
    itself is not shareable: MLflow keeps ``runsExpanded`` out of shared views.)"""
    return {"searchFilter": "", "orderByKey": "attributes.start_time", "orderByAsc": False,
            "selectedColumns": list(COLUMNS), "runListHidden": False, "viewMaximized": False,
            "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": rec.SWEEP_TAG}]}}


def prepare_experiment(client: Any, experiment_id: str) -> None:
    """Tag the experiment with the saved view and its kind. Cheap and idempotent: every run and
    every sweep calls it when it starts (a store made before the view had it gets it then)."""
    tags = client.get_experiment(experiment_id).tags
    state = json.dumps(view_state(), separators=(",", ":"))
    if tags.get(SHARED_VIEW_TAG) != state:
        client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG, state)
    if tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def runs_url(base: str, experiment_id: str) -> str:
    """The runs table of an experiment in model-training mode with the saved view applied."""
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")


def server_command(uri: str, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """``mlflow server`` over ``uri`` with one worker and no job runner, and its environment."""
    argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", "1"]
    return argv, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="repro-ui", description="The MLflow UI over the run store, on the runs table "
                                "of an experiment with the comparison columns (make ui).")
    p.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    p.add_argument("--experiment", default="repro")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--print-url", action="store_true", help="print the link and exit (no server)")
    args = p.parse_args(argv)
    from mlflow.tracking import MlflowClient

    from repro.tracking import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    base = f"http://{args.host}:{args.port}"
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name(args.experiment)
    if exp is None:
        print(f"error: no experiment '{args.experiment}' in {uri}: train a run first (make train) or pass "
              "--experiment / --tracking-uri", file=sys.stderr)
        return 2
    prepare_experiment(MlflowClient(tracking_uri=uri), exp.experiment_id)
    url = runs_url(base, exp.experiment_id)
    print(f"runs of '{args.experiment}': {url}", flush=True)
    if args.print_url:
        return 0
    cmd, env = server_command(uri, args.host, args.port)
    return subprocess.call(cmd, env=env)


if __name__ == "__main__":
    sys.exit(main())
