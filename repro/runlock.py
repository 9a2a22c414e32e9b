"""One owner per run: a lock per run identity, held while the run trains.

Two identical commands started together would otherwise both resume or create the same
run, write the same checkpoint file and log the same steps twice. The lock is
``<checkpoint_dir>/<identity>.lock`` under ``fcntl.flock``: the kernel releases it when
its holder dies, however it dies, so a crash never leaves a stale lock behind. The
second command does not wait (a sweep would stall behind a job that may run for hours):
it is refused at once, naming the process that holds the run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class RunLockError(RuntimeError):
    """The run's lock cannot be taken; the message says why and what to do."""


class RunBusy(RunLockError):
    """Another live process holds the run's lock."""


class RunLock:
    """The held lock of one run; :meth:`release` (or leaving the ``with`` block) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the file while still holding it, then unlock: whoever opened the old file
        finds it gone and tries again on a new one, so two holders never coexist."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def lock_path(directory: str | Path, identity: str) -> Path:
    return Path(directory) / f"{identity}.lock"


def acquire(directory: str | Path, identity: str) -> RunLock:
    """Hold the lock of run ``identity``, or raise :class:`RunBusy` at once (it never waits)."""
    path = lock_path(directory, identity)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunBusy(f"run {identity} is being trained by process {holder} (lock {path}); "
                              "wait for it or stop it") from None
            if _still_at(fd, path):
                break
            os.close(fd)  # the holder before us removed the file as it let go: lock the new one
    except OSError as exc:
        raise RunLockError(f"cannot create the run lock {path} ({exc.strerror}): make trainer.checkpoint_dir "
                      "writable") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return RunLock(path, fd)


def _still_at(fd: int, path: Path) -> bool:
    """Whether the locked file is still the one at ``path`` (not unlinked by its last holder)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> str:
    """The pid the holder wrote; "unknown" in the instant between its lock and its write."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"
