"""One call of the GPU check: its state carried between calls (``state.json``), the budget left,
and each phase run under its own wall-time cap (an alarm that raises :class:`CapReached`), its
result written at once so that a command killed at its limit still returns what it measured."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import command_line, now
from .outputs import write_outputs
from .profiles import Profile


class CapReached(BaseException):
    """A phase ran into its wall-time cap. A BaseException, like KeyboardInterrupt, so that the
    ``except Exception`` inside torch.compile and the checks cannot swallow it."""


@contextlib.contextmanager
def wall_cap(seconds: float) -> Iterator[None]:
    """Raise :class:`CapReached` in the main thread after ``seconds``: an in-process phase cannot be
    killed from outside, and one that overruns must not eat the training budget. (A long native
    call, such as one compilation, delays the signal until it returns.)"""

    def on_alarm(signum: int, frame: Any) -> None:
        raise CapReached(f"wall-time cap of {seconds:.0f} s reached")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Run:
    """One call of the script: its mode, budget, folders and the state carried between calls."""

    profile: Profile
    args: argparse.Namespace
    out: Path
    state_dir: Path
    started: float = field(default_factory=time.perf_counter)
    state: dict[str, Any] = field(default_factory=dict)
    data: Any = None

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def remaining(self) -> float:
        return self.args.budget - self.elapsed()

    def load(self) -> None:
        if self.args.fresh and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state = json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}
        self.state.setdefault("phases", {})
        self.state.setdefault("calls", [])
        self.state["calls"].append({"date": now(), "command": command_line(), "budget_s": self.args.budget})

    def save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str) + "\n")
        os.replace(tmp, self.state_file)
        write_outputs(self)

    def log(self, msg: str) -> None:
        print(f"[gpu-check {self.elapsed():6.1f}s] {msg}", flush=True)

    def phase(self, name: str, cap: float, fn: Callable[[dict[str, Any]], None], *, rerun: bool = False,
              keep_result: bool = False, alarm: bool = True) -> None:
        """Run ``fn(result)`` under ``cap`` seconds (clipped to the budget) unless an earlier call
        finished it (done, capped or failed: a second call spends its minutes on what is missing);
        whatever ``fn`` put into ``result`` is written at once and kept even when it stops at the
        cap. ``keep_result`` hands ``fn`` the earlier call's result to continue; ``alarm=False`` leaves
        the cap to ``fn`` itself (a subprocess with a timeout must not be interrupted mid-wait)."""
        before = self.state["phases"].get(name) or {}
        if before.get("status") in ("done", "capped", "error") and not rerun and name not in self.args.redo:
            self.log(f"{name}: {before['status']} in an earlier call (kept; --redo {name} or --fresh to run it again)")
            return
        cap = min(cap, self.remaining() - self.args.reserve)
        result = before.get("result", {}) if keep_result and name not in self.args.redo else {}
        rec: dict[str, Any] = {"status": "running", "cap_s": round(cap, 1), "started": now(), "result": result}
        self.state["phases"][name] = rec
        if cap <= 1:
            rec.update(status="skipped", reason=f"no budget left ({self.remaining():.0f} s remaining)")
            self.save()
            return
        self.log(f"{name}: start (cap {cap:.0f} s, {self.remaining():.0f} s of the budget left)")
        self.save()
        t0 = time.perf_counter()
        try:
            with wall_cap(cap) if alarm else contextlib.nullcontext():
                fn(result)
            rec["status"] = "done"
        except CapReached as exc:
            rec.update(status="capped", reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - record, go on to the next phase
            rec.update(status="error", reason=f"{type(exc).__name__}: {exc}".splitlines()[0],
                       traceback=traceback.format_exc()[-3000:])
        rec["wall_s"] = round(time.perf_counter() - t0, 2)
        self.log(f"{name}: {rec['status']} in {rec['wall_s']:.1f} s" + (f" ({rec['reason']})" if "reason" in rec else ""))
        self.save()
