"""What a benchmark result turns into: one row per target (the checks and the verdict), the
markdown table printed and written as ``latest.md``, and the ``<device>-<date>.json`` beside it.
Pure functions of the result dict, apart from the measuring, so that the GPU check can render a
result it merged from several partial runs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .specs import TARGETS


def checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target as one row: name, value, op, target, pass."""
    rows = []
    for t in result.get("training", []):
        for name, r in t["ratios"].items():
            if "target" not in r:
                continue  # informational ratios
            rows.append({"check": f"{name} {t['key']}", "value": r["median"], "op": ">=", "target": r["target"],
                         "pass": r["pass"]})
    for s in result.get("selection", []):
        rows.append({"check": f"selection seconds {s['model']} ({s['num_prunable'] / 1e6:.1f}M; 1 s per 20M)",
                     "value": s["median_s"], "op": "<", "target": s["target_seconds"], "pass": s["pass_time"]})
        rows.append({"check": f"selection extra mem / weights {s['model']}", "value": s["extra_x_weights"], "op": "<=",
                     "target": s["target_extra_x"], "pass": s["pass_memory"]})
    for e in result.get("epoch", []):
        if e["device"] != "cuda":
            continue  # the epoch-time target is a GPU target
        target = TARGETS["resnet18 cifar10 epoch seconds (cuda, batch 128, with data)"]
        for name, c in e["contenders"].items():
            rows.append({"check": f"epoch seconds {e['model']} b{e['batch']} {e['variant']} {name}", "value": c["epoch_s"],
                         "op": "<=", "target": target, "pass": c["epoch_s"] <= target})
    if "loader" in result:
        c = result["loader"]["check"]
        rows.append({"check": f"loader ours/{c['peer']} (best torchvision)", "value": c["median"], "op": ">=",
                     "target": c["target"], "pass": c["pass"]})
    return rows


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["settings"]
    lines = [
        f"# repro bench: {result['device']}, {result['date']}",
        "",
        f"machine: {m['cpu_model']}, {m['cpus_usable']} usable CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"{m['platform']}" + (f", GPU {m['gpu']}" if "gpu" in m else ""),
        f"git: {result['git']['commit'][:12]} (dirty: {result['git']['dirty']}); load average at start/end: "
        f"{_fmt_load(m.get('loadavg_start'))} / {_fmt_load(m.get('loadavg_end'))} "
        "(a busy machine makes every number here noisy)",
        f"settings: {s['repeats']} interleaved repeats after {s['warmup']} warm-up round(s); precision {s['precision']}; "
        f"PMP update every {s['update_frequency']} iterations, linear 0 -> {s['final_sparsity']} over the whole run; "
        "ratios are medians of per-round paired ratios; glibc malloc tuned for reuse (repro.runtime): "
        f"{result.get('malloc_reuse', 'not recorded')}",
        "",
    ]
    if result.get("training"):
        names = ("dense", "pmp", "hooks", "bare", "dense-torchsgd", "pmp-adam", "pmp-adam-pertensor")
        ratio_names = ("pmp/dense", "dense/bare", "pmp/hooks", "dense/dense-torchsgd", "adam: fused/per-tensor")
        lines += ["## training throughput (images/s, median)", "",
                  "| spec | steps | dense | pmp | hooks (peer) | bare | dense, torch SGD | pmp, Adam fused | "
                  "pmp, Adam per-tensor | " + " | ".join(ratio_names) + " |",
                  "| --- | ---: " + "| ---: " * (len(names) + len(ratio_names)) + "|"]
        for t in result["training"]:
            c, r = t["contenders"], t["ratios"]
            lines.append(f"| {t['key']} | {t['steps']} | " + " | ".join(
                f"{c[k]['images_per_s']['median']:.0f}" for k in names) + " | " + " | ".join(
                f"{r[k]['median']:.3f} ({r[k]['q1']:.2f}-{r[k]['q3']:.2f})" for k in ratio_names)
                + " |")
        lines += ["", "ratios: median (interquartile range) of the per-round paired ratios. The suite's loops step "
                  "repro.optim.MaskedSGD; hooks and bare step torch.optim.SGD; 'dense, torch SGD' is the suite's "
                  "loop stepping torch.optim.SGD (dense/dense-torchsgd: what the suite's SGD alone is worth, no target); "
                  "'pmp, Adam' is the suite's PMP loop under Adam (lr 1.2e-3) with the suite's kernel (fused on CPU) or "
                  "torch's per-tensor one (adam: fused/per-tensor, no target)",
                  "",
                  "minor page faults per measurement (median): " + "; ".join(
                      t["key"] + " " + ", ".join(f"{k} {statistics.median(t['contenders'][k]['minor_faults']):.0f}"
                                                for k in t["contenders"]) for t in result["training"]), ""]
    if result.get("selection"):
        lines += ["## global mask selection (MaskSet.prune_to, fresh process per model)", "",
                  "| model | prunable | cold s | median s | extra peak MiB | extra / weights | exact count | memory by |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for x in result["selection"]:
            lines.append(f"| {x['model']} | {x['num_prunable']:,} | {x['cold_s']:.3f} | {x['median_s']:.3f} | "
                         f"{x['extra_peak_bytes'] / 2**20:.0f} | {x['extra_x_weights']:.2f}x | {x['exact_count']} | "
                         f"{x['memory_method']} |")
        lines.append("")
    if result.get("epoch"):
        lines += ["## epoch time (suite loop, augment, evaluation excluded; extrapolated from the median images/s)", "",
                  "| spec | variant | dense images/s | pmp images/s | dense epoch s | pmp epoch s | pmp/dense | warm-up s |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for e in result["epoch"]:
            c = e["contenders"]
            lines.append(f"| {e['key']} | {e['variant']} | {c['dense']['images_per_s']['median']:.0f} | "
                         f"{c['pmp']['images_per_s']['median']:.0f} | {c['dense']['epoch_s']:.2f} | {c['pmp']['epoch_s']:.2f} | "
                         f"{e['ratios']['pmp/dense']['median']:.3f} | {e['warmup_s']:.1f} |")
        lines.append("")
    if result.get("loader"):
        ld = result["loader"]
        lines += [f"## data loader (batches/s of {ld['batch']}, median; CIFAR-10, augment)", "",
                  "| contender | batches/s |", "| --- | ---: |"]
        for name, c in ld["contenders"].items():
            lines.append(f"| {name} | {c['batches_per_s']['median']:.1f} |")
        lines.append("")
    lines += ["## checks", "", "| check | value | target | result |", "| --- | ---: | ---: | --- |"]
    for row in result["checks"]:
        lines.append(f"| {row['check']} | {row['value']:.3f} | {row['op']} {row['target']:.3g} | "
                     f"{'PASS' if row['pass'] else 'MISS'} |")
    lines += ["", f"all targets met: {result['all_pass']}"]
    return "\n".join(lines) + "\n"


def _fmt_load(load: list[float] | None) -> str:
    return "n/a" if not load else "/".join(f"{x:.2f}" for x in load)


def write(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``<device>-<date>.json`` (everything) and ``latest.md`` (the table) under ``out_dir``."""
    return write_files(result, out_dir, f"{result['device']}-", "latest.md", render(result))


def write_files(result: dict[str, Any], out_dir: Path, prefix: str, md_name: str, text: str) -> tuple[Path, Path]:
    """``<prefix><date>.json`` (every number) and ``md_name`` (``text`` plus a pointer to the json):
    the one file layout of every bench section, so that sections never overwrite each other's."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("-", "")[:15]
    path = out_dir / f"{prefix}{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    md = out_dir / md_name
    md.write_text(text + f"\nfull numbers: `{path.name}`\n")
    return path, md
