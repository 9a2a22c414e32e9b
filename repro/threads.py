"""Threads per training job from the cores it may use (issue 22).

Two jobs with 2 threads each on a 2-core machine collapse (measured on the development VM:
24.7 s per LeNet-300-100 epoch instead of ~1.3), while one job with 1 thread loses only ~30%
against 2 threads. So ``trainer.threads=0`` (auto) gives each job an equal share of the cores:

    threads = max(1, cores // trainers)

``cores`` is what the process may run on (``os.sched_getaffinity``: a SLURM allocation or a
``taskset`` counts, the machine's total does not). ``trainers`` is how many training processes
run at once, known from two places:

- the launcher: in a Hydra multirun, ``hydra.launcher.n_jobs`` (joblib) workers run side by
  side, so a job starts as one of that many even before its neighbours have started;
- a machine-wide registry for everything else (two shells, two sweeps, submitit): each
  training process holds an exclusive ``flock`` on one slot file in a per-user directory
  while its loop runs; the kernel drops the lock when the process exits, so a crash leaves
  no stale slot. Counting is a non-blocking shared try-lock of every slot file.

The count is taken again at every epoch start (a few system calls). More trainers than before:
fewer threads at once (oversubscription is what collapses). Fewer: more threads only after
the lower count has held for :data:`SETTLE_S` seconds, because a sweep worker between two
jobs (MLflow, data, model build) gives its slot back for a moment and would otherwise make its
neighbour oversubscribe for an epoch.

An explicit ``trainer.threads=N`` is used as given; such a job still holds a slot, so that
auto jobs beside it count it. Bitwise results on CPU depend on the thread count (LeNet-300-100
weights differ by ~4e-4 after 30 SGD steps with 1 vs 2 threads), so every run records the
counts it used (tag ``repro.threads``); set ``trainer.threads=N`` where runs must match bit for bit.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from repro import records as rec

log = logging.getLogger(__name__)

#: seconds a lower trainer count must hold before a job takes more threads (see module doc)
SETTLE_S = 10.0
#: slot files tried before giving up on registering (a job then just does not count for others)
MAX_SLOTS = 1024
#: thread counts kept in the tag (the last ones): a run changes count rarely
TAG_HISTORY = 32


def threads_for(cores: int, trainers: int) -> int:
    """THE rule: an equal share of the cores per trainer, never less than one thread."""
    return max(1, cores // max(1, trainers))


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def joblib_workers(n_jobs: object, cores: int) -> int:
    """How many jobs joblib runs at once for ``n_jobs`` (None: 1; -1: all cores; -2: all but one)."""
    if n_jobs is None:
        return 1
    n = int(n_jobs)  # type: ignore[call-overload]
    return max(1, cores + 1 + n) if n < 0 else max(1, n)


def launcher_jobs(cores: int) -> int:
    """Jobs the Hydra launcher runs side by side with this one: ``hydra.launcher.n_jobs`` in a
    multirun (joblib), else 1 (a single run, the basic launcher, or no Hydra at all)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return 1
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return 1
    return joblib_workers(OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=None), cores)


def default_registry_dir() -> Path:
    """$REPRO_TRAINER_LOCK_DIR, else a per-user directory in /tmp (per SLURM job inside an
    allocation, whose cores are its own)."""
    from repro.scaleout import per_user_lock_dir  # the GPU slots' directory rule, for trainer slots

    return per_user_lock_dir("REPRO_TRAINER_LOCK_DIR", "repro-trainers")


@dataclasses.dataclass
class Slot:
    """One held slot: the open file whose exclusive ``flock`` says "a trainer runs"."""

    index: int
    fd: int
    pid: int

    def release(self) -> None:
        """Close the file, which drops the lock (a no-op in a forked child, whose lock is the parent's)."""
        if self.fd >= 0 and self.pid == os.getpid():
            os.close(self.fd)
        self.fd = -1


class Registry:
    """The slot files of one directory: take one, count the held ones."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else default_registry_dir()

    def _path(self, index: int) -> Path:
        return self.directory / f"trainer{index}.lock"

    def take(self) -> Slot | None:
        """The first free slot, held until :meth:`Slot.release` or the process exits; None if the
        directory cannot be used (the job then trains, uncounted by others)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("trainer registry %s unusable (%s): other jobs will not count this one", self.directory, exc)
            return None
        for index in range(MAX_SLOTS):
            try:
                fd = os.open(self._path(index), os.O_RDWR | os.O_CREAT, 0o666)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            return Slot(index=index, fd=fd, pid=os.getpid())
        return None

    def held(self) -> int:
        """How many slots are held now, this process's own included. A shared try-lock fails only
        against a holder's exclusive lock, so two processes counting at once do not count each other."""
        count = 0
        for path in self.directory.glob("trainer*.lock"):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                count += 1
            finally:
                os.close(fd)
        return count


class Policy:
    """The auto rule over one job's life: the thread count now, given the trainer counts seen.

    Pure apart from ``count`` and ``clock`` (passed in, so tests drive it by hand)."""

    def __init__(self, cores: int, count: Callable[[], int], floor: int = 1, settle_s: float = SETTLE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cores = cores
        self.count = count
        self.settle_s = settle_s
        self.clock = clock
        #: the trainer count the current threads are for (the launcher's n_jobs is a floor at start)
        self.trainers = max(1, floor, count())
        self.threads = threads_for(cores, self.trainers)
        self._fewer_since: float | None = None

    def check(self) -> int:
        """The thread count for the next stretch of training (see the module doc for why a rise waits)."""
        now_trainers = max(1, self.count())
        if now_trainers >= self.trainers:
            self._fewer_since = None
            self.trainers = now_trainers
        else:
            now = self.clock()
            if self._fewer_since is None:
                self._fewer_since = now
            if now - self._fewer_since >= self.settle_s:
                self.trainers = now_trainers
                self._fewer_since = None
        self.threads = threads_for(self.cores, self.trainers)
        return self.threads


@dataclasses.dataclass
class _Job:
    """This process's current training job: its rule (None: fixed threads), slot and record."""

    policy: Policy | None
    slot: Slot | None
    record: Callable[[dict[str, str]], None]
    history: list[int]


_JOB: _Job | None = None


def _apply(threads: int) -> None:
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _tags(job: _Job, cores: int) -> dict[str, str]:
    return {rec.THREADS_TAG: ",".join(str(t) for t in job.history[-TAG_HISTORY:]), rec.CORES_TAG: str(cores)}


def start(requested: int, record: Callable[[dict[str, str]], None] = lambda tags: None,
          registry: Registry | None = None) -> int:
    """Set this process's torch threads for a new training job and register it as a trainer.

    ``requested``: ``trainer.threads`` (0: auto). ``record``: where the thread tags go (the
    tracker's ``set_tags``). Per job, because a joblib worker runs job after job."""
    global _JOB
    release()
    registry = registry or Registry()
    slot = registry.take()
    cores = usable_cores()
    if requested > 0:
        policy, threads, why = None, requested, "trainer.threads"
    else:
        policy = Policy(cores, registry.held, floor=launcher_jobs(cores), settle_s=SETTLE_S)
        threads, why = policy.threads, f"auto: {cores} cores / {policy.trainers} trainers"
    _apply(threads)
    _JOB = _Job(policy=policy, slot=slot, record=record, history=[threads])
    log.info("threads: %d (%s)", threads, why)
    _record(_JOB, cores)
    return threads


def recheck() -> None:
    """At an epoch start: follow the auto rule if the number of trainers changed (no-op for a fixed
    ``trainer.threads`` or outside a job started by :func:`start`)."""
    job = _JOB
    if job is None or job.policy is None:
        return
    before = job.history[-1]
    threads = job.policy.check()
    if threads == before:
        return
    _apply(threads)
    job.history.append(threads)
    log.info("threads: %d -> %d (auto: %d cores / %d trainers)", before, threads, job.policy.cores, job.policy.trainers)
    _record(job, job.policy.cores)


def release() -> None:
    """The job's loop is over: give the slot back so that the trainers left may grow."""
    global _JOB
    job, _JOB = _JOB, None
    if job is not None and job.slot is not None:
        job.slot.release()


def _record(job: _Job, cores: int) -> None:
    """Tag the run; a tracker that cannot write a tag must not stop the training it describes."""
    try:
        job.record(_tags(job, cores))
    except Exception as exc:  # noqa: BLE001
        log.warning("could not record the thread count: %s", exc)
