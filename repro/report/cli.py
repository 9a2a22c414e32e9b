"""``repro-report``: parse the command line, run the report's steps in order, say what was written.

Thin on purpose: each step is one call into its module (reading, aggregate, claims, plots,
relative, pivot via render, logging_run), so the order of the steps is readable here at a glance.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from repro.report import (
    plot_deploy,  # noqa: F401 - registers the deploy plot (latency and size vs sparsity)
    sensitivity,
)
from repro.report import plots as plotting
from repro.report.aggregate import cost_columns, summarize
from repro.report.claims import DEFAULT_REFERENCES, compare, load_references, references_for
from repro.report.logging_run import log_report_run
from repro.report.reading import fetch_runs, fill_max_acc, mlflow_history, split_runs, tidy
from repro.report.relative import RELATIVE_COLUMNS, relative_claims
from repro.report.render import provenance, safe_uri, write_csvs, write_markdown
from repro.report.stats import NO_RUNS
from repro.tracking import resolve_uri


def build_parser() -> argparse.ArgumentParser:
    """The options of ``repro-report``."""
    p = argparse.ArgumentParser(
        prog="repro-report", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="MLflow runs -> results/<profile>/: a table beside the paper's and the literature's numbers, "
                    "plots, and a report run in MLflow.",
        epilog="Reads: runs of --experiment (repro) from --tracking-uri, else $MLFLOW_TRACKING_URI, else\n"
               "sqlite:///mlflow.db in the working directory (the store repro-train writes); with --profile, only\n"
               "runs tagged profile=NAME (or reused by that profile's sweep).\n"
               "Writes: results/PROFILE/ (results/all without --profile; --out elsewhere): table.md, table.csv,\n"
               "claims.csv, relative.csv and PNG plots, plus (unless --no-log) one MLflow run tagged kind=report\n"
               "in the same store.\n"
               "Example: repro-train -m +profile=quick && repro-report --profile quick")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="repro", help="MLflow experiment (default: repro)")
    p.add_argument("--profile", default=None, help="only runs with this `profile` tag (default: all runs)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: results/<profile>)")
    p.add_argument("--references", type=Path, default=DEFAULT_REFERENCES, help="references CSV")
    p.add_argument("--tolerance", type=float, default=0.5, help="tolerance in accuracy points (default 0.5)")
    p.add_argument("--relative-tolerance", type=float, default=None,
                   help="margin in accuracy points of 'PMP at least as accurate as X' (default: --tolerance)")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the t-intervals (default 0.95)")
    p.add_argument("--dense-method", action="append", default=None,
                   help="method name(s) of the dense baseline (default: dense); repeatable")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-log", action="store_true", help="do not log the report as an MLflow run")
    return p


@dataclass
class Report:
    """What one report wrote, for tests and callers that go on from it."""

    out: Path
    groups: pd.DataFrame
    claims: pd.DataFrame
    left_out: pd.DataFrame
    files: list[Path]
    report_run_id: str | None
    relative: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RELATIVE_COLUMNS))


def _draw_plots(uri: str, out: Path, dense_methods: Sequence[str], **data: pd.DataFrame) -> list[Path]:
    """Every registered plot, given what it declared it needs (the MlflowClient only if one asks)."""
    import matplotlib

    matplotlib.use("Agg")
    specs = plotting.registered()
    if any("client" in s.needs for s in specs):
        from mlflow.tracking import MlflowClient

        data["client"] = MlflowClient(tracking_uri=uri)
    paths: list[Path] = []
    for spec in specs:
        paths += spec.draw(data, out, dense_methods)
    return paths


def make_report(argv: Sequence[str] | None = None) -> Report:
    """Everything ``repro-report`` does; returns what it wrote (tests call this)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not 0.0 < args.confidence < 1.0:
        raise SystemExit("error: --confidence must lie in (0, 1), e.g. 0.95")
    dense_methods = tuple(args.dense_method or ("dense",))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = resolve_uri(args.tracking_uri)
    raw = fetch_runs(uri, args.experiment, args.profile)
    if raw.empty:
        raise SystemExit(f"error: no runs with profile '{args.profile}' in experiment '{args.experiment}' at "
                         f"{safe_uri(uri)}: run the sweep first, or check --profile/--tracking-uri")
    runs, left, dupes = split_runs(tidy(raw, dense_methods))
    runs = fill_max_acc(runs, mlflow_history(uri))  # runs logged before max_test_acc: from their history
    out = args.out or Path("results") / (args.profile or "all")
    out.mkdir(parents=True, exist_ok=True)
    for prefix in (*plotting.plot_prefixes(), sensitivity.PLOT_PREFIX):  # stale plots would be logged again
        for old in out.glob(f"{prefix}*.png"):
            old.unlink()
    for old in (out / sensitivity.RANKING_CSV, out / sensitivity.SECTION_MD):
        old.unlink(missing_ok=True)

    groups = summarize(runs, args.confidence, dense_methods, dupes)
    costs = cost_columns(runs)
    refs = load_references(args.references)
    claims = compare(refs, groups, args.tolerance, args.confidence) if not refs.empty else pd.DataFrame()
    if args.relative_tolerance is None:
        args.relative_tolerance = args.tolerance
    relative = relative_claims(groups, args.relative_tolerance, args.confidence, dense_methods, costs)
    if not groups.empty:
        groups["references"] = references_for(groups, claims)

    plots: list[Path] = []
    if not args.no_plots and not groups.empty:
        plots = _draw_plots(uri, out, dense_methods, groups=groups, refs=refs, runs=runs)

    # one setting moved at a time around our default PMP (the sensitivity profile): ranking.csv and plots
    sens_files = sensitivity.write(sensitivity.analyse(runs, raw, args.confidence, dense_methods), out,
                                   plots=not args.no_plots)

    prov = provenance(args, uri, runs, argv)
    files = write_csvs(out, groups, claims, relative)
    md = out / "table.md"
    write_markdown(md, prov, groups, claims, left, plots, costs, args, len(dupes), relative, refs, dense_methods)
    if sens_files:
        with md.open("a") as fh:
            fh.write(f"\nSensitivity to the undisclosed settings: [{sensitivity.SECTION_MD}]({sensitivity.SECTION_MD}), "
                     f"[{sensitivity.RANKING_CSV}]({sensitivity.RANKING_CSV}).\n")
    files = [md, *files, *plots, *sens_files]
    run_id = None
    if not args.no_log:
        params = {"profile": args.profile or "(all)", "experiment": args.experiment, "tolerance_pp": args.tolerance,
                  "relative_tolerance_pp": args.relative_tolerance, "confidence": args.confidence,
                  "runs_used": len(runs), "runs_left_out": len(left),
                  "references": str(args.references)}
        run_id = log_report_run(uri, args.experiment, args.profile, files, params, claims, relative)
    return Report(out, groups, claims, left, files, run_id, relative)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: write the report, print one line of what it holds."""
    logging.basicConfig(level=os.environ.get("REPRO_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    report = make_report(argv)
    n_claims = 0 if report.claims.empty else int((report.claims["verdict"] != NO_RUNS).sum())
    print(f"wrote {report.out / 'table.md'} ({len(report.groups)} group(s), {n_claims} reference comparison(s), "
          f"{len(report.relative)} PMP-vs-other comparison(s), {len(report.left_out)} run(s) left out, "
          f"{sum(f.suffix == '.png' for f in report.files)} plot(s))"
          + (f"; logged as MLflow run {report.report_run_id}" if report.report_run_id else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
