"""``make gpu-pack`` (``python tools/gpu_check.py --pack``): what the device lacks, prepared here
into ``.gpu-carry/``: the Hydra wheels for Python 3.12 (antlr4 built from its sdist), a copy of the
CIFAR-10 JPEG tree and the commit; then the size against the 64 MiB that may travel and the carry
list. Runs on this machine, never on the device."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .common import CARRY, PACK_PACKAGES, ROOT, command_line, now
from .environment import provenance
from .limits import CARRY_LIMIT_BYTES


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def pack(data: Path, carry: Path = CARRY) -> int:
    """Prepare what ``carry`` must name: the Hydra wheels for Python 3.12, a copy of the CIFAR-10
    JPEG tree and the commit, in one git-ignored folder; print its size, the whole tree's, and the
    carry list. Idempotent: what is there already is kept."""
    from importlib.metadata import PackageNotFoundError, version

    wheels = carry / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    notes = []
    for name in PACK_PACKAGES:
        try:
            pin = f"{name}=={version(name)}"
        except PackageNotFoundError:
            pin = {"antlr4-python3-runtime": "antlr4-python3-runtime==4.9.3"}.get(name, name)
        stem = name.replace("-", "_").lower()
        if any(p.name.lower().startswith(stem) for p in wheels.glob("*.whl")):
            continue
        download = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", "3.12",
                    "--no-deps", "-d", str(wheels), pin]
        got = subprocess.run(download, capture_output=True, text=True)
        if got.returncode == 0:
            continue
        # antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 pins) is an sdist on PyPI: build its pure-Python wheel here
        build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), pin]
        if subprocess.run(build).returncode != 0:
            print(f"error: neither a wheel nor a build of {pin}:\n{got.stderr[-1500:]}", file=sys.stderr)
            return 1
        notes.append(f"{pin}: no wheel on the index, built here from its sdist (pure Python: py3-none-any)")
    src, dst = data / "cifar10-jpeg", carry / "data" / "cifar10-jpeg"
    if not (src / "train").is_dir():
        print(f"error: {src} missing (REPRO_DATA_DIR or --data-root)", file=sys.stderr)
        return 1
    if not dst.is_dir() or _dir_bytes(dst) != _dir_bytes(src):
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
    prov = provenance()
    (carry / "provenance.json").write_text(json.dumps({"commit": prov.get("commit"), "dirty": prov.get("dirty"),
                                                      "date": now(), "packed_by": command_line()}, indent=2) + "\n")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    tree = sum((ROOT / f).stat().st_size for f in listed if f and (ROOT / f).is_file() and not (ROOT / f).is_symlink())
    carried = _dir_bytes(carry)
    total = tree + carried
    for line in notes:
        print("note:", line)
    print(f"wheels: {', '.join(sorted(p.name for p in wheels.glob('*.whl')))} ({_dir_bytes(wheels) / 1e6:.2f} MB)")
    print(f"data:   {dst.relative_to(ROOT)} ({_dir_bytes(dst) / 1e6:.1f} MB)")
    print(f"size:   {carry.name} {carried / 1e6:.1f} MB + working tree {tree / 1e6:.1f} MB = {total / 1e6:.1f} MB "
          f"({total / 2**20:.1f} MiB of the 64 MiB that may travel)")
    print(f'carry:  ["{carry.relative_to(ROOT)}"]')
    print('run:    command="PYTHONUNBUFFERED=1 python3 tools/gpu_check.py", carry=[".gpu-carry"], timeout_s=600')
    if total > CARRY_LIMIT_BYTES:
        print("error: over the 64 MiB that may travel", file=sys.stderr)
        return 1
    return 0
