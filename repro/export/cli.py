"""``repro-export <run id | checkpoint path> --out DIR``: write the pruned subnetwork in the CSR
layout (see :mod:`repro.export`), print its sizes, and with ``--latency`` time it on the CPU.
``repro-export --profile NAME --latency --log``: time every finished run of a profile, one after
another in this process, and log the figures to each run (:mod:`repro.export.profile_latency`).

    repro-export 3f2c...e1 --out exports/pmp-lenet300-s0.98
    repro-export checkpoints/<identity>.pt --out exports/x --latency --threads 1
    repro-export --profile quick --latency --log        # what make reproduce-table runs before the report

User errors are one line ``error: ...`` with the fix, exit status 2, nothing written to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from repro import records as rec
from repro.export.layout import ExportError
from repro.export.pipeline import check_out, export
from repro.export.pipeline import time_export as timed
from repro.export.sizes import ZSTD_MISSING, zstd_available
from repro.export.source import read_source
from repro.export.spec import SpecError, infer_spec

LATENCY_FILE = "latency.json"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repro-export", description=__doc__.split("\n\n")[0])
    p.add_argument("source", nargs="?", default=None,
                   help="an MLflow run id, a training checkpoint (checkpoints/<identity>.pt) or a final_state_dict.pt")
    p.add_argument("--out", default=None, help="the folder to write (new, or empty); required with a source")
    p.add_argument("--tracking-uri", default=None, help="MLflow store of a run id (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.add_argument("--model", default=None, help="model name, where the file alone cannot tell (default: read off the shapes)")
    p.add_argument("--width", type=float, default=None, help="model.width of the run (default: read off the shapes)")
    p.add_argument("--latency", action="store_true", help=f"also time dense vs sparse on this CPU into DIR/{LATENCY_FILE}")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for --latency (0 = torch's default)")
    p.add_argument("--repeats", type=int, default=21, help="interleaved rounds for --latency")
    g = p.add_argument_group("every finished run of a profile (instead of a source)")
    g.add_argument("--profile", default=None, help="time the FINISHED runs tagged with this profile (needs --latency)")
    g.add_argument("--experiment", default="repro", help="MLflow experiment of --profile (default: repro)")
    g.add_argument("--log", action="store_true", help="log the timings to each run as latency/* metrics")
    g.add_argument("--force", action="store_true", help="time runs again that already have latency/* metrics")
    return p


def _usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of arguments (None: nothing)."""
    if args.profile is not None:
        if args.source is not None or args.out is not None:
            return "--profile times the runs of a profile: pass either a source with --out, or --profile, not both"
        if not args.latency:
            return "--profile only times runs: add --latency (and --log to record the figures on each run)"
        return None
    if args.log or args.force:
        return "--log and --force apply to --profile only: add --profile NAME"
    if args.source is None or args.out is None:
        return "pass a run id or checkpoint and --out DIR (or --profile NAME --latency --log)"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.repeats < 1 or args.threads < 0:
        print("error: --repeats must be at least 1 and --threads at least 0 (0: torch's default)", file=sys.stderr)
        return 2
    problem = _usage_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.profile is not None:
        from repro.export.profile_latency import time_profile

        return time_profile(args.profile, args.tracking_uri, args.experiment, threads=args.threads,
                            repeats=args.repeats, log=args.log, force=args.force)
    out = Path(args.out)
    try:
        check_out(out)
        source = read_source(args.source, args.tracking_uri)
        spec = infer_spec(source.state, args.model or source.model, args.width if args.width is not None else source.width)
        meta = export(source.state, spec, out, source.origin)
    except (ExportError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(meta, out))
    if args.latency:
        print(latency_summary(time_export(out, meta, args.threads, args.repeats)))
    return 0


def summary(meta: dict, out: Path) -> str:
    """What was written and what it weighs, for the terminal."""
    s, m = meta["sizes"], meta["model"]
    lines = [f"wrote {out / meta['file']} ({meta['container']}, layout {meta['layout']}) and {out / 'model.json'}",
             f"model {m['name']} width {m['width']:g}, {int(s[rec.SIZE_NONZERO_PARAMS])} of {int(s[rec.SIZE_PARAMS])} "
             "parameters non-zero"]
    for kind in ("dense", "sparse"):
        zstd = s.get(f"{rec.SIZE_PREFIX}{kind}_zstd_bytes")
        lines.append(f"{kind:>6}: {s[f'{rec.SIZE_PREFIX}{kind}_bytes']:.0f} bytes, "
                     f"gzip {s[f'{rec.SIZE_PREFIX}{kind}_gzip_bytes']:.0f}, "
                     + (f"zstd {zstd:.0f}" if zstd is not None else "zstd n/a"))
    if not zstd_available():
        lines.append(ZSTD_MISSING)
    return "\n".join(lines)


def time_export(out: Path, meta: dict, threads: int, repeats: int) -> dict:
    """Dense vs sparse-kernel latency of an export folder, written to DIR/latency.json."""
    if threads:
        torch.set_num_threads(threads)
    result = timed(out, meta, repeats)
    (out / LATENCY_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def latency_summary(result: dict) -> str:
    lines = [f"CPU, {result['threads']} thread(s), medians of {result['repeats']} interleaved rounds:"]
    for r in result["results"]:
        lines.append(f"  batch {r['batch']:>4}: dense {r['dense_s'] * 1e3:.3f} ms, sparse {r['sparse_s'] * 1e3:.3f} ms, "
                     f"speedup {r['speedup']:.2f}x ({r['dense_images_per_s']:.0f} vs {r['sparse_images_per_s']:.0f} images/s)")
    kept = [f"{n} ({k})" for n, k in result["layers"].items() if k != "csr"]
    if kept:
        lines.append(f"  dense in both: {', '.join(kept)}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
