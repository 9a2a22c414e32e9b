"""Phase 0 of the GPU check: what the device is and offers (python, torch, CUDA, GPU), Hydra made
importable from the carried wheels, the provenance of the call (commit from git or from the carry),
and CIFAR-10 decoded once from the JPEG copy. Everything later phases need before they can start."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import CARRY, PACK_PACKAGES, ROOT, WHEELS, command_line, now

if TYPE_CHECKING:
    from .phases import Run


def ensure_hydra(site: Path, wheels: Path = WHEELS) -> dict[str, Any]:
    """Make ``import hydra`` work: ``repro.config`` (and so the bench and ``repro-train``) needs
    hydra-core and omegaconf, which the device lacks. Installs the carried wheels into ``site``
    (never into the image's own environment) and puts it first on ``sys.path`` and ``PYTHONPATH``,
    so the ``repro-train`` subprocesses see it too. Idempotent: a warm machine keeps ``site``."""
    info: dict[str, Any] = {"site": str(site)}

    def add_site() -> None:
        if site.is_dir() and str(site) not in sys.path:
            sys.path.insert(0, str(site))
            os.environ["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])

    add_site()
    try:
        import hydra  # noqa: F401
        import omegaconf  # noqa: F401
    except ImportError:
        if not wheels.is_dir() or not any(wheels.glob("*.whl")):
            raise RuntimeError(f"hydra-core is missing and {wheels} holds no wheels: run `make gpu-pack` here and "
                               "carry .gpu-carry") from None
        names = [p.name for p in sorted(wheels.glob("*.whl"))]
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), "--no-deps",
               "--no-cache-dir", "--upgrade", "--target", str(site), *PACK_PACKAGES]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install of the carried wheels failed: {proc.stderr[-1500:]}") from None
        info.update(installed_from_wheels=names, pip_command=shlex.join(cmd))
        add_site()
        import importlib

        importlib.invalidate_caches()
    import hydra
    import omegaconf

    info.update(hydra=hydra.__version__, omegaconf=omegaconf.__version__, hydra_path=str(Path(hydra.__file__).parent))
    return info


def provenance() -> dict[str, Any]:
    """Command, commit, machine and date. The device gets the working tree without ``.git``, so the
    commit then comes from the ``provenance.json`` that ``make gpu-pack`` wrote into the carry."""
    out: dict[str, Any] = {"command": command_line(), "argv": sys.argv, "cwd": os.getcwd(), "date": now(),
                           "hostname": socket.gethostname(), "platform": platform.platform(),
                           "machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        commit = proc.stdout.strip() if proc.returncode == 0 else ""
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip()) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", None
    packed = CARRY / "provenance.json"
    if commit:
        out.update(commit=commit, dirty=dirty, commit_from="git")
    elif packed.is_file():
        p = json.loads(packed.read_text())
        out.update(commit=p.get("commit", "unknown"), dirty=p.get("dirty"), commit_from=f"{packed.name} (make gpu-pack, "
                   f"{p.get('date', '?')}): the device has no .git")
    else:
        out.update(commit="unknown", dirty=None, commit_from="no .git and no .gpu-carry/provenance.json")
    return out


def environment(run: Run, result: dict[str, Any]) -> None:
    """What the device is and offers; stops the GPU mode when CUDA is missing."""
    import torch

    result.update(python=platform.python_version(), executable=sys.executable, torch=torch.__version__,
                  torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
                  torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count())
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        props = torch.cuda.get_device_properties(0)
        result.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                      capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                      multiprocessors=props.multi_processor_count, gpu_free_bytes=free, gpu_total_bytes=total,
                      gpu_free_gib=round(free / 2**30, 1), bf16_native=torch.cuda.is_bf16_supported(including_emulation=False),
                      cudnn=torch.backends.cudnn.version())
    for name in ("torchvision", "triton", "mlflow", "numpy"):
        try:
            module = __import__(name)
            result[name] = getattr(module, "__version__", "present")
        except ImportError:
            result[name] = None
    result["hydra"] = ensure_hydra(run.state_dir.parent / "site")
    if run.profile.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: run with --dry on a CPU")


def data_root(args: argparse.Namespace) -> Path:
    """The carried copy first (on the device ``../shared`` does not exist), then $REPRO_DATA_DIR,
    then ``../shared/data`` beside the checkout."""
    if args.data_root:
        return Path(args.data_root)
    if (CARRY / "data" / "cifar10-jpeg" / "train").is_dir():
        return CARRY / "data"
    return Path(os.environ.get("REPRO_DATA_DIR") or ROOT.parent / "shared" / "data")


def cache_dir() -> Path:
    return Path(os.environ.get("REPRO_CACHE_DIR") or ROOT / ".cache" / "repro")


def load_data(run: Run, result: dict[str, Any]) -> None:
    """Decode CIFAR-10 once (cached as tensors), so the bench and both training runs start warm."""
    from repro.data import load

    t0 = time.perf_counter()
    run.data = load("cifar10", data_root(run.args), download=False, cache_dir=cache_dir())
    result.update(root=str(data_root(run.args)), source=run.data.source, train=len(run.data.train),
                  test=len(run.data.test), seconds=round(time.perf_counter() - t0, 2), cache=str(cache_dir()))


def dataset(run: Run) -> Any:
    if run.data is None:
        load_data(run, {})
    return run.data
