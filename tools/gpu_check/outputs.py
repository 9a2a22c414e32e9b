"""Phase 4 of the GPU check: the one output folder the device brings back: ``gpu-check.json``
(provenance, environment, budget, checks, bench, training), ``gpu-check.md`` (the summary a reader
opens first) and the bench's ``bench.md``, rewritten after every phase, then checked against the
device's limits (:func:`gpu_check.limits.output_problems`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .bench_part import bench_on_path
from .common import NOTE, SCHEMA, now
from .limits import OUT_LIMITS, output_problems

if TYPE_CHECKING:
    from .phases import Run


def document(run: Run) -> dict[str, Any]:
    """The JSON: provenance, environment, budget, correctness checks, bench, training."""
    phases = run.state.get("phases", {})

    def result(name: str) -> dict[str, Any]:
        return phases.get(name, {}).get("result", {})

    checks = result("checks").get("checks", [])
    bench = result("bench")
    full = bench.get("full") or {}
    train = result("train")
    statuses = {n: rec.get("status") for n, rec in phases.items()}
    complete = all(statuses.get(n) == "done" for n in ("environment", "data", "checks", "bench", "train"))
    return {
        "schema": SCHEMA,
        "what": "repro GPU check (issue 20): correctness of the CUDA path, the bench on the device, and one PMP "
                "ResNet-18 / CIFAR-10 run at 0.729 with its dense baseline through repro-train",
        "note": NOTE,
        "mode": run.profile.name,
        "status": "complete" if complete else "partial",
        "checks_passed": bool(checks) and len(checks) >= 4 and all(c.get("pass") for c in checks),
        "provenance": {**run.state.get("provenance", {}), "date_end": now(), "calls": run.state.get("calls", [])},
        "environment": result("environment"),
        "data": result("data"),
        "budget": {"budget_s": run.args.budget, "caps_s": caps(run), "reserve_s": run.args.reserve,
                   "min_train_s": run.args.min_train, "elapsed_s_this_call": round(run.elapsed(), 1),
                   "phases": {n: {k: v for k, v in rec.items() if k not in ("result", "traceback")}
                              for n, rec in phases.items()}},
        "checks": checks,
        "bench": {"parts_done": bench.get("parts_done", []), "skipped": bench.get("skipped", {}),
                  "errors": bench.get("errors", {}),
                  "checks": full.get("checks", []), "all_targets_met": full.get("all_pass"),
                  "epoch": [{k: e[k] for k in ("variant", "key", "batch", "steps", "width", "warmup_s", "ratios")}
                            | {n: {"images_per_s": c["images_per_s"]["median"], "epoch_s": c["epoch_s"]}
                               for n, c in e["contenders"].items()} for e in full.get("epoch", [])],
                  "full": full},
        "training": train,
        "errors": {n: {"reason": rec.get("reason"), "traceback": rec.get("traceback")}
                   for n, rec in phases.items() if rec.get("status") == "error"},
    }


def render_md(doc: dict[str, Any]) -> str:
    """The summary a reader opens first."""
    prov, env = doc["provenance"], doc["environment"]
    lines = [f"# repro GPU check ({doc['mode']}): {doc['status']}", "",
             f"**{doc['note']}.**", "",
             f"- command: `{prov.get('command')}`; commit {str(prov.get('commit'))[:12]} (dirty: {prov.get('dirty')}, "
             f"from {prov.get('commit_from')}); {prov.get('date')} to {prov.get('date_end')}; host {prov.get('hostname')}",
             f"- python {env.get('python')}, torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), "
             f"GPU {env.get('gpu', 'none')}, free {env.get('gpu_free_gib', '-')} GiB, "
             f"hydra {(env.get('hydra') or {}).get('hydra')}, mlflow {env.get('mlflow')}",
             "", "## phases", "", "| phase | status | wall s | cap s | reason |", "| --- | --- | ---: | ---: | --- |"]
    for name, rec in doc["budget"]["phases"].items():
        lines.append(f"| {name} | {rec.get('status')} | {rec.get('wall_s', '-')} | {rec.get('cap_s')} | "
                     f"{rec.get('reason', '')} |")
    lines += ["", f"## correctness (all passed: {doc['checks_passed']})", "", "| check | result | wall s |",
              "| --- | --- | ---: |"]
    for c in doc["checks"]:
        lines.append(f"| {c['name']} | {'PASS' if c.get('pass') else 'FAIL ' + c.get('reason', '')} | {c.get('wall_s', '-')} |")
    b = doc["bench"]
    lines += ["", "## bench (details in bench.md)", ""]
    if b["epoch"]:
        lines += ["| variant | dense epoch s | pmp epoch s | pmp/dense | warm-up s |", "| --- | ---: | ---: | ---: | ---: |"]
        for e in b["epoch"]:
            lines.append(f"| {e['variant']} | {e['dense']['epoch_s']:.2f} | {e['pmp']['epoch_s']:.2f} | "
                         f"{e['ratios']['pmp/dense']['median']:.3f} | {e['warmup_s']:.1f} |")
    for part, why in b["skipped"].items():
        lines.append(f"- {part}: skipped ({why})")
    for part, err in b["errors"].items():
        lines.append(f"- {part}: ERROR {err['reason']}")
    for row in b["checks"]:
        lines.append(f"- {row['check']}: {row['value']:.3f} {row['op']} {row['target']:.3g}: {'PASS' if row['pass'] else 'MISS'}")
    t = doc["training"]
    lines += ["", "## training (repro-train, experiment=pmp_resnet18, tracking=none)", ""]
    if t.get("plan"):
        pl = t["plan"]
        lines.append(f"plan: {pl['epochs']} epochs per run (epoch {pl['epoch_s']} s from {pl['epoch_s_from']}; "
                     f"{pl['remaining_s_at_plan']} s left at planning)")
        lines += ["", "| run | status | epochs | final test acc | best test acc | sparsity | median epoch s |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in t.get("runs", {}).items():
            f = r.get("final") or {}
            lines.append(f"| {name} | {r.get('status')} | {r.get('epochs_done', 0)}/{r.get('epochs_planned', '-')} | "
                         f"{f.get('final/test_acc', f.get('final_test_acc', '-'))} | "
                         f"{f.get('final/best_test_acc', f.get('best_test_acc', '-'))} | "
                         f"{f.get('final/sparsity', f.get('final_sparsity', '-'))} | {r.get('epoch_time_median_s', '-')} |")
        if "pmp_minus_dense_pp" in t:
            lines += ["", f"PMP minus dense: {t['pmp_minus_dense_pp']} points ({t['compared']}), one seed each: "
                          "one seed decides nothing."]
    if t.get("skipped"):
        lines.append(f"skipped: {t['skipped']}")
    return "\n".join(lines) + "\n"


def caps(run: Run) -> dict[str, float]:
    a = run.args
    return {"environment": a.cap_env, "data": a.cap_data, "checks": a.cap_checks, "bench": a.cap_bench}


def write_outputs(run: Run) -> None:
    """gpu-check.json, gpu-check.md and bench.md into the one output folder; then the limits check
    over that folder, recorded in the JSON itself."""
    run.out.mkdir(parents=True, exist_ok=True)
    doc = document(run)
    full = doc["bench"]["full"]
    files = {"gpu-check.md": render_md(doc)}
    if full.get("checks") is not None and full.get("machine"):
        bench_on_path()
        from bench.report import render

        files["bench.md"] = render(full)
    for name, text in files.items():
        (run.out / name).write_text(text)
    doc["outputs"] = {"dir": str(run.out), "files": sorted([*files, "gpu-check.json"]), "limits": OUT_LIMITS}
    (run.out / "gpu-check.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    doc["outputs"]["problems"] = output_problems(run.out)
    (run.out / "gpu-check.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
