"""Per-run CPU latency of a profile: ``repro-export --profile NAME --latency --log``.

For every FINISHED training run of the profile in the store (found as the report finds them,
:func:`repro.report.reading.fetch_runs`), export its subnetwork to a temporary folder, time the
dense model against the CSR-kernel one (batch-1 latency, batch-256 throughput; interleaved
rounds, medians, paired ratios: :mod:`repro.export.latency`) and, with ``--log``, log the figures
to the run as ``latency/*`` metrics (:mod:`repro.records`), the machine as a tag, and the export's
``size/*`` metrics where the run has none (it trained without ``trainer.export=true``).

Why after the sweep and not at the end of each training run: a sweep trains jobs side by side,
and a timing taken beside another job measures the neighbour as much as the model. Here every
run is timed in one process, one run after another, at one thread count, so the figures of a
profile are comparable with each other. Runs that already carry the metrics are skipped unless
``--force`` (a rerun of the pipeline costs nothing); runs with no weights of their own (LTH's
nested target runs, ``trainer.save_model=false``) are skipped with the reason.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from repro import records as rec
from repro.export.layout import ExportError
from repro.export.pipeline import export, time_export
from repro.export.source import open_store, read_source
from repro.export.spec import SpecError, infer_spec

#: the batch sizes whose figures become metrics (measure_latency's defaults)
LATENCY_BATCH, THROUGHPUT_BATCH = 1, 256


@dataclass
class Timed:
    """What happened to one run: its metrics (empty when skipped) and, if skipped, why."""

    run_id: str
    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    skipped: str = ""


def latency_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The ``latency/*`` metrics of one :func:`~repro.export.pipeline.time_export` result."""
    by_batch = {r["batch"]: r for r in result["results"]}
    b1, b256 = by_batch[LATENCY_BATCH], by_batch[THROUGHPUT_BATCH]
    return {
        rec.LATENCY_DENSE_B1_MS: b1["dense_s"] * 1e3,
        rec.LATENCY_SPARSE_B1_MS: b1["sparse_s"] * 1e3,
        rec.LATENCY_SPEEDUP_B1: b1["speedup"],
        rec.LATENCY_DENSE_B256_IPS: b256["dense_images_per_s"],
        rec.LATENCY_SPARSE_B256_IPS: b256["sparse_images_per_s"],
        rec.LATENCY_SPEEDUP_B256: b256["speedup"],
        rec.LATENCY_THREADS: float(result["threads"]),
        rec.LATENCY_ROUNDS: float(result["repeats"]),
        rec.LATENCY_CSR_LAYERS: float(sum(kind == "csr" for kind in result["layers"].values())),
    }


def machine() -> str:
    """The CPU model, its core count, torch's version and the date: the tag beside the figures."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return f"{cpu}; {os.cpu_count()} CPUs; torch {torch.__version__}; {date}"


def finished_runs(uri: str, experiment: str, profile: str) -> pd.DataFrame:
    """The profile's FINISHED runs (reports and LTH chains left out, as the report leaves them), oldest first."""
    from repro.report.reading import fetch_runs, migrate_legacy

    raw = fetch_runs(uri, experiment, profile)
    if raw.empty:
        return raw
    # runs timed or exported before the metric namespaces (latency_*, size_*) count as timed/sized
    done = migrate_legacy(raw[raw["status"] == "FINISHED"])
    return done.sort_values("start_time", kind="stable").reset_index(drop=True)


def _get(row: pd.Series, column: str) -> Any:
    value = row.get(column)
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def time_run(run_id: str, uri: str, repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """(latency metrics, size metrics) of one run, exported to a temporary folder and timed here."""
    source = read_source(run_id, uri)
    spec = infer_spec(source.state, source.model, source.width)
    with tempfile.TemporaryDirectory(prefix="repro-latency-") as tmp:
        out = Path(tmp) / "export"
        meta = export(source.state, spec, out, source.origin)
        return latency_metrics(time_export(out, meta, repeats)), meta["sizes"]


def time_runs(runs: pd.DataFrame, uri: str, repeats: int, log: bool, force: bool,
              say: Callable[[str], None] = print) -> list[Timed]:
    """Time the runs one after another; with ``log``, record each run's figures as soon as it is timed."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    where = machine()
    done: list[Timed] = []
    for _, row in runs.iterrows():
        run_id = row["run_id"]
        item = Timed(run_id, _get(row, f"tags.{rec.RUN_NAME_TAG}") or run_id[:12])
        done.append(item)
        # a chain's target runs carry their cycle (a sweep's jobs are nested too, but are not targets)
        if _get(row, f"tags.{rec.CYCLE_TAG}"):
            item.skipped = "a nested target run (LTH): it saves no weights of its own"
        elif _get(row, f"metrics.{rec.LATENCY_DONE}") is not None and not force:
            item.skipped = "timed already (--force to time it again)"
        else:
            try:
                item.metrics, sizes = time_run(run_id, uri, repeats)
            except (ExportError, SpecError) as exc:
                item.skipped = str(exc)
            else:
                if log:
                    extra = {} if _get(row, f"metrics.{rec.SIZE_SPARSE_BYTES}") is not None else sizes
                    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
                    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in {**item.metrics, **extra}.items()],
                                     tags=[RunTag(rec.LATENCY_MACHINE_TAG, where)])
        say(line(item))
    return done


def line(item: Timed) -> str:
    """One run's outcome for the terminal."""
    if item.skipped:
        return f"skipped {item.name}: {item.skipped}"
    m = item.metrics
    return (f"timed   {item.name}: batch 1 dense {m[rec.LATENCY_DENSE_B1_MS]:.3f} ms, "
            f"sparse {m[rec.LATENCY_SPARSE_B1_MS]:.3f} ms ({m[rec.LATENCY_SPEEDUP_B1]:.2f}x); "
            f"batch 256 dense {m[rec.LATENCY_DENSE_B256_IPS]:.0f}, sparse "
            f"{m[rec.LATENCY_SPARSE_B256_IPS]:.0f} images/s ({m[rec.LATENCY_SPEEDUP_B256]:.2f}x)")


def time_profile(profile: str, tracking_uri: str | None, experiment: str = "repro", *, threads: int = 0,
                 repeats: int = 21, log: bool = False, force: bool = False) -> int:
    """The command: exit 2 with one ``error:`` line (nothing logged) when the store or the profile has
    no finished run; else time them all, say what was logged, exit 0."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per run, not a bar per download
    try:
        uri = open_store(tracking_uri)
        runs = finished_runs(uri, experiment, profile)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if runs.empty:
        print(f"error: no FINISHED runs with profile '{profile}' in experiment '{experiment}' at {uri}: "
              "run the sweep first (make reproduce-table PROFILE=...), or check --profile/--tracking-uri", file=sys.stderr)
        return 2
    if threads:
        torch.set_num_threads(threads)
    print(f"timing {len(runs)} finished run(s) of profile '{profile}' on the CPU, {torch.get_num_threads()} thread(s), "
          f"medians of {repeats} interleaved rounds, one run after another" + ("" if log else " (not logged: add --log)"),
          flush=True)
    done = time_runs(runs, uri, repeats, log, force, say=lambda s: print(s, flush=True))
    timed = sum(not d.skipped for d in done)
    print(f"{timed} run(s) timed" + (" and logged" if log and timed else "") + f", {len(done) - timed} skipped")
    return 0
