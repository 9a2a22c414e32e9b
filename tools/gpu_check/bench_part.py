"""Phase 2 of the GPU check: the bench (``tools/bench/``) on the device, through its own functions,
one part at a time (epoch time first, since the training plan needs it; the compiled variant last),
merged into one result; and the epoch time the training plan reads from it."""

from __future__ import annotations

import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from .common import TOOLS
from .environment import dataset
from .profiles import SKIPPED_IN_DRY

if TYPE_CHECKING:
    from .phases import Run


def bench_on_path() -> None:
    """Make the bench package (``tools/bench/``) importable. Import from it only after
    :func:`gpu_check.environment.ensure_hydra`: it imports ``repro.config``, hence Hydra."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))


def bench_phase(run: Run, result: dict[str, Any]) -> None:
    """The bench's own functions, one part at a time, so that a cap keeps what was measured: the
    epoch time the training plan needs first, the compiled variant last."""
    bench_on_path()
    from bench.report import checks
    from bench.runner import run as run_bench
    from bench.specs import Settings, TrainSpec, Variant

    p = run.profile
    settings = Settings(device=p.device, **p.bench_settings)
    key, model, ds, batch, steps, width = p.epoch_spec
    spec = TrainSpec(key, model, ds, batch, steps, width)
    datasets = {"cifar10": dataset(run)}
    common = {"specs": (), "datasets": datasets, "epoch_spec": spec, "selection_in_process": p.selection_in_process,
              "log": lambda msg: run.log("  bench: " + msg)}
    skipped = result.setdefault("skipped", {})
    parts: list[tuple[str, dict[str, Any]]] = [
        *((f"epoch {v}", {"variants": (Variant.parse(v),), "selection_models": (), "loader": False}) for v in p.variants),
        ("selection", {"variants": (), "selection_models": p.selection_models, "loader": False}),
        ("loader", {"variants": (), "selection_models": (), "loader": True}),
        *((f"epoch {v}", {"variants": (Variant.parse(v),), "selection_models": (), "loader": False})
          for v in p.late_variants),
    ]
    for v, why in SKIPPED_IN_DRY.items():
        if p.name == "dry":
            skipped[f"epoch {v}"] = why
    errors = result.setdefault("errors", {})
    merged: dict[str, Any] | None = result.get("full")
    for name, kw in parts:
        t0 = time.perf_counter()
        try:
            part = run_bench(settings, **common, **kw)
        except Exception as exc:  # noqa: BLE001 - one part failing must not cost the others
            errors[name] = {"reason": f"{type(exc).__name__}: {exc}".splitlines()[0], "traceback": traceback.format_exc()[-2000:]}
            run.log(f"  bench {name}: error ({errors[name]['reason']})")
            run.save()
            continue
        run.log(f"  bench {name}: {time.perf_counter() - t0:.1f} s")
        if merged is None:
            merged = part
        else:
            for section in ("epoch", "selection"):
                merged.setdefault(section, []).extend(part.get(section, []))
            if "loader" in part:
                merged["loader"] = part["loader"]
            merged["wall_seconds"] += part["wall_seconds"]
            merged["machine"]["loadavg_end"] = part["machine"]["loadavg_end"]
        merged["checks"] = checks(merged)
        merged["all_pass"] = all(row["pass"] for row in merged["checks"])
        result["full"] = merged
        result["parts_done"] = [*result.get("parts_done", []), name]
        run.save()
    if errors:
        raise RuntimeError(f"bench part(s) failed: {', '.join(errors)} (the other parts are kept)")


def epoch_seconds(run: Run) -> tuple[float, str]:
    """Seconds per training epoch of the training runs' setting (compile off), from the bench:
    the slower of dense and PMP, scaled to the training set; the fallback when the bench gave none."""
    bench = run.state["phases"].get("bench", {}).get("result", {}).get("full") or {}
    for e in bench.get("epoch", []):
        if not e["compile"]:
            rate = min(c["images_per_s"]["median"] for c in e["contenders"].values())
            return run.profile.train_images / rate, f"bench {e['variant']} (slower of dense and pmp)"
    return run.profile.fallback_epoch_s, "assumed: the bench measured no epoch time"
