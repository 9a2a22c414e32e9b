"""One job per GPU on a multi-GPU machine, on Hydra's own launchers: nothing here schedules.

``hydra/launcher=gpu_node`` (conf/hydra/launcher/gpu_node.yaml) is Hydra's joblib launcher
with ``n_jobs`` = the number of GPU slots, plus the :class:`GpuSlots` callback. Before a
job's code runs, the callback gives the job's process one GPU slot: an exclusive
``flock`` on ``<lock_dir>/gpu<ID>.slot<K>.lock``, held for the rest of the process's life
and released by the kernel when the process exits (no stale leases after a crash), and
narrows ``CUDA_VISIBLE_DEVICES`` to that GPU, so ``trainer.device=auto`` finds exactly one.

Why per process and not per job number: joblib's loky backend reuses worker processes,
CUDA reads ``CUDA_VISIBLE_DEVICES`` once per process, and a pool hands the next job to
whichever worker is free, so ``CUDA_VISIBLE_DEVICES=${hydra:job.num} % N`` would put two
running jobs on one GPU and could not move a reused worker anyway. A worker that keeps its
slot runs all its jobs on one GPU, and ``n_jobs`` workers never share one (unless
``jobs_per_gpu`` > 1). The lock directory is per user and per machine, so two sweeps
started on the same machine share the GPUs instead of colliding.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: this process's slot: pid, fd (keeps the flock), device, path
_LEASE: dict[str, Any] = {}


def visible_gpus(gpus: Any = None) -> list[str]:
    """The GPU ids to share out: ``gpus`` when given (a list or "0,1"), else the entries of
    $CUDA_VISIBLE_DEVICES when it is set, else every GPU ``nvidia-smi`` lists (else torch's
    NVML count). Never initialises CUDA in this process."""
    if gpus is not None:
        items = gpus.split(",") if isinstance(gpus, str) else list(gpus)
        return [str(g).strip() for g in items if str(g).strip()]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=60, check=True).stdout
            return [line.strip() for line in out.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch/CUDA: no GPUs
        return []


def gpu_slots(gpus: Any = None, jobs_per_gpu: int = 1) -> int:
    """``${repro_gpu_slots:GPUS,JOBS_PER_GPU}``: how many jobs run at once (1 without a GPU)."""
    if OmegaConf.is_config(gpus):
        gpus = OmegaConf.to_container(gpus)
    return max(1, len(visible_gpus(gpus)) * int(jobs_per_gpu))


# Registered on import. gpu_node.yaml names GpuSlots as a Hydra callback, and Hydra 1.3
# instantiates callbacks (importing this module) before it builds the launcher, which is
# when hydra.launcher.n_jobs is resolved.
if not OmegaConf.has_resolver("repro_gpu_slots"):
    OmegaConf.register_new_resolver("repro_gpu_slots", gpu_slots)


def per_user_lock_dir(env_var: str, stem: str) -> Path:
    """$``env_var``, else ``/tmp/<stem>-<uid>`` (with ``-slurm<job>`` inside a SLURM allocation,
    whose resources are its own): where flock-based slots of one user on one machine live."""
    if os.environ.get(env_var):
        return Path(os.environ[env_var])
    name = f"{stem}-{os.getuid()}"
    if os.environ.get("SLURM_JOB_ID"):
        name += f"-slurm{os.environ['SLURM_JOB_ID']}"
    return Path(tempfile.gettempdir()) / name


def default_lock_dir() -> Path:
    """$REPRO_GPU_LOCK_DIR, else a per-user directory in /tmp (per SLURM job inside an allocation)."""
    return per_user_lock_dir("REPRO_GPU_LOCK_DIR", "repro-gpu-slots")


def lease_gpu(devices: Sequence[str], jobs_per_gpu: int = 1, lock_dir: str | Path | None = None,
              poll_s: float = 2.0, timeout_s: float | None = None) -> str | None:
    """This process's GPU: the first free slot (GPU 0..N-1 before any second slot), taken
    once and kept until the process exits. Waits while every slot is taken. None without GPUs."""
    if _LEASE.get("pid") == os.getpid():
        return _LEASE["device"]
    if not devices:
        return None
    directory = Path(lock_dir) if lock_dir else default_lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    slots = [(device, k) for k in range(max(1, int(jobs_per_gpu))) for device in devices]
    started, warned = time.monotonic(), False
    while True:
        for device, k in slots:
            path = directory / f"gpu{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.slot{k}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by exec'd children
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            _LEASE.update(pid=os.getpid(), fd=fd, device=device, path=str(path))
            return device
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"no free GPU slot in {directory} after {timeout_s:g}s")
        if not warned:
            log.warning("all %d GPU slots in %s are taken (more parallel jobs than slots, or another sweep on this "
                        "machine): waiting for one", len(slots), directory)
            warned = True
        time.sleep(poll_s)


def pin_to_gpu(device: str) -> None:
    """Make ``device`` the only GPU this process sees. CUDA reads the variable when it starts,
    so this must happen before the first CUDA call in the process."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        if os.environ.get("CUDA_VISIBLE_DEVICES") != device:
            log.warning("CUDA already started in pid %d with CUDA_VISIBLE_DEVICES=%s: cannot move it to GPU %s",
                        os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), device)
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = device


class GpuSlots(Callback):
    """Hydra callback: each job's process leases one GPU slot before the job runs.

    gpus: GPU ids (null: $CUDA_VISIBLE_DEVICES, else all GPUs of the machine); jobs_per_gpu:
    how many jobs may share one GPU; lock_dir: where the slot locks live (null: per user in /tmp).
    """

    def __init__(self, gpus: Any = None, jobs_per_gpu: int = 1, lock_dir: str | None = None) -> None:
        if OmegaConf.is_config(gpus):
            gpus = OmegaConf.to_container(gpus)
        # detected once, in the launching process, before any worker narrows its view
        self.devices = visible_gpus(gpus)
        self.jobs_per_gpu = int(jobs_per_gpu)
        self.lock_dir = str(lock_dir) if lock_dir else None
        if not self.devices:
            log.warning("hydra/launcher=gpu_node: no GPU found; jobs run one at a time on trainer.device")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        device = lease_gpu(self.devices, self.jobs_per_gpu, self.lock_dir)
        if device is None:
            return
        pin_to_gpu(device)
        num = OmegaConf.select(config, "hydra.job.num", default=None)
        log.info("job %s: pid %d holds GPU slot %s (CUDA_VISIBLE_DEVICES=%s)", num, os.getpid(), _LEASE.get("path"),
                 os.environ.get("CUDA_VISIBLE_DEVICES"))
