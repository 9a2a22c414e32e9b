"""``make mutants``: apply named one-line bugs to a copy of the package and check that the tests
written against each of them fail.

A test suite can pass for the wrong reason: a fixture without BatchNorm2d cannot tell train
mode from eval mode, a check that recomputes its expected value with the function under test
agrees with any bug. Each mutant (tools/mutant_catalogue.py) is a plausible mistake (a wrong mode, a stale score, a
dropped argument) together with the tests meant to catch it. For every mutant this script

1. copies ``repro/``, ``tests/``, ``conf/``, ``pyproject.toml`` (and ``hydra_plugins/``, if any)
   into a fresh temp directory,
2. replaces the mutant's exact old text by its new text (refusing unless the old text occurs
   exactly once, so a mutant that no longer matches the code fails loudly instead of passing),
3. runs ``python -m pytest -q -x -p no:cacheprovider <its tests>`` there, with ``PYTHONPATH``
   pointing at the copy (ahead of the editable install),

after first running all the killing tests once on an unmutated copy, which must pass. It
prints a table (killed / SURVIVED, seconds) and exits non-zero if any mutant survived, the
baseline failed, or a run errored (pytest usage errors, nothing collected) rather than failed.

    .venv/bin/python tools/mutants.py              # all mutants
    .venv/bin/python tools/mutants.py --list       # names, files and killing tests
    .venv/bin/python tools/mutants.py synflow lth  # only mutants whose name contains a word
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# tools/ is sys.path[0] when this file runs as a script
from mutant_catalogue import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parent.parent
#: what a copy holds: the package, its tests, the Hydra configs, the project metadata, and Hydra's
#: plugin namespace where the checkout has one (conf/config.yaml names a sweeper that lives there)
COPIED = ("repro", "tests", "conf", "pyproject.toml")
OPTIONAL = ("hydra_plugins",)
#: seconds a single pytest run may take before the mutant counts as killed by a timeout
TIMEOUT = 900

# ----------------------------------------------------------------------------- the machinery


def make_copy(dst: Path) -> None:
    """The package, tests, configs and metadata under ``dst``; ``.cache`` is linked, not copied
    (decoded datasets: tests point REPRO_CACHE_DIR at <copy>/.cache/repro)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in (*COPIED, *(n for n in OPTIONAL if (ROOT / n).exists())):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        else:
            shutil.copy2(src, dst / name)
    (ROOT / ".cache").mkdir(exist_ok=True)
    (dst / ".cache").symlink_to(ROOT / ".cache", target_is_directory=True)


def matched(mutant: Mutant, root: Path) -> str:
    """The text of the mutant's file under ``root``; refuses unless the old text occurs exactly once."""
    text = (root / mutant.file).read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise SystemExit(f"mutant {mutant.name}: the old text occurs {count} times in {mutant.file} "
                         f"(expected exactly once); update tools/mutants.py:\n{mutant.old}")
    return text


def apply(mutant: Mutant, root: Path) -> None:
    """Replace the mutant's old text in the copy under ``root``."""
    (root / mutant.file).write_text(matched(mutant, root).replace(mutant.old, mutant.new))


def environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("REPRO_DATA_DIR", str((ROOT.parent / "shared" / "data").resolve()))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("GIT_PYTHON_REFRESH", "quiet")
    env.pop("MLFLOW_TRACKING_URI", None)  # every test brings its own store
    return env


def check_imports_from(root: Path) -> None:
    """The copy, not the editable install, must be what ``import repro`` finds there."""
    out = subprocess.run([sys.executable, "-c", "import repro; print(repro.__file__)"], cwd=root,
                         env=environment(root), capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"in the copy {root}, 'import repro' found {out}: PYTHONPATH does not win")


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[int, float, str]:
    """pytest in the copy: (exit code, seconds, the tail of its output); a timeout is code -1."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=environment(root), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - start, f"timed out after {TIMEOUT} s"
    return proc.returncode, time.perf_counter() - start, (proc.stdout + proc.stderr)[-3000:]


def first_failure(output: str) -> str:
    """pytest's one-line summary of the first failure (what killed the mutant), shortened."""
    summary = output.split("short test summary info", 1)[-1]
    for line in summary.splitlines():
        if line.startswith(("FAILED tests", "ERROR tests")):
            return line if len(line) <= 160 else line[:157] + "..."
    return ""


def verdict(code: int) -> str:
    """pytest's exit code as a verdict: 1 = a test failed (killed), 0 = all passed (survived)."""
    return {0: "SURVIVED", 1: "killed", -1: "killed (timeout)"}.get(code, f"ERROR (pytest exit {code})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="run only mutants whose name contains one of these words")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temp copies (their paths are printed)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or any(w in m.name for w in args.only)]
    if not chosen:
        parser.error(f"no mutant matches {args.only}; --list shows them")
    if args.list:
        for m in chosen:
            print(f"{m.name}\n  {m.file}: {m.why}\n  killed by: {' '.join(m.tests)}")
        return 0

    # Every mutant must still match the code before anything runs (a stale one fails loudly).
    for m in chosen:
        matched(m, ROOT)
    work = Path(tempfile.mkdtemp(prefix="repro-mutants-"))
    started = time.perf_counter()
    try:
        baseline = work / "baseline"
        make_copy(baseline)
        check_imports_from(baseline)
        tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        print(f"baseline: {len(tests)} killing test(s) on the unmutated copy ...", flush=True)
        code, seconds, tail = run_tests(baseline, tests)
        if code != 0:
            print(tail)
            print(f"baseline FAILED (pytest exit {code}, {seconds:.0f} s): the killing tests must pass on the "
                  f"unmutated code before mutants mean anything")
            return 2
        print(f"baseline passed in {seconds:.0f} s", flush=True)

        rows = []
        for m in chosen:
            root = work / m.name
            make_copy(root)
            apply(m, root)
            code, seconds, tail = run_tests(root, m.tests)
            rows.append((m, verdict(code), seconds))
            print(f"  {m.name:<34} {verdict(code):<22} {seconds:5.0f} s  {first_failure(tail)}", flush=True)
            if code not in (0, 1, -1):
                print(tail)
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        if args.keep:
            print(f"copies kept under {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    width = max(len(m.name) for m, _, _ in rows)
    print(f"\n| {'mutant':<{width}} | file                        | verdict              | seconds |")
    print(f"|{'-' * (width + 2)}|-----------------------------|----------------------|---------|")
    for m, v, seconds in rows:
        print(f"| {m.name:<{width}} | {m.file:<27} | {v:<20} | {seconds:7.1f} |")
    survived = [m.name for m, v, _ in rows if not v.startswith("killed")]
    total = time.perf_counter() - started
    print(f"\n{len(rows) - len(survived)} of {len(rows)} mutants killed in {total:.0f} s"
          + (f"; not killed: {', '.join(survived)}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
