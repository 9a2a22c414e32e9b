"""The MLflow UI as a new user meets it (issue 15): a two-job sweep, ``make ui``'s server on
127.0.0.1, and Debian's Chromium headless at the printed link. Real processes are the point here
(the sweep's launcher, the server, the browser), so the test is slow; it needs ``chromium``
(``make chromium``) and skips without it.

The page is read as text (``--dump-dom`` after the app rendered), not as pixels: the runs view in
model-training mode, the comparison columns of :data:`repro.dashboard.COLUMNS`, and the sweep as
one group holding its parent run and both jobs. ``REPRO_UI_SCREENSHOT=<png>`` also writes a screenshot of that view
(results/ui/runs_view.png was made so).
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED_DATA, needs_mnist

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SWEEP = ("model=lenet300", "data=mnist", "trainer.epochs=1", "trainer.batch_size=100", "data.train_subset=500",
         "data.test_subset=300", "data.download=false", "pruner=pmp", "sparsity=0.8", "seed=0,1",
         "trainer.progress=none", "hydra/launcher=basic")
#: no background traffic, no first-run UI, no sandbox (containers), software rendering
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
                  "--disable-dev-shm-usage", "--metrics-recording-only", "--window-size=2400,800",
                  "--virtual-time-budget=20000")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _text(dom: str) -> str:
    """The visible text of a dumped DOM, whitespace collapsed."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


@contextlib.contextmanager
def ui_server(uri: str, cwd: Path):
    """``python -m repro.dashboard`` (what make ui runs) on a free port; yields the printed link."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "repro.dashboard", "--tracking-uri", uri, "--port", str(port)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://\S+", line).group(0)
        for _ in range(120):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                    break
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def chromium(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={out / 'chromium'}", *extra, url],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@needs_mnist
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (make chromium)")
def test_make_ui_opens_the_runs_view_with_our_columns_and_the_sweep_as_a_parent(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "REPRO_DATA_DIR": str(SHARED_DATA), "PYTHONPATH": str(ROOT),
           "REPRO_CKPT_DIR": str(tmp_path / "checkpoints"), "REPRO_CACHE_DIR": str(ROOT / ".cache" / "repro")}
    sweep = subprocess.run([sys.executable, "-m", "repro.train", "-m", *SWEEP,
                            f"hydra.sweep.dir={tmp_path / 'multirun' / '2026-12-03' / '07-00-00'}"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    with ui_server(uri, tmp_path) as url:
        assert "workflowType=machine_learning" in url
        dom = chromium(url, tmp_path, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        text = _text(dom.stdout)
        if shot := os.environ.get("REPRO_UI_SCREENSHOT"):
            chromium(url, tmp_path, f"--screenshot={Path(shot).resolve()}")
    # model-training mode, the runs table: not the GenAI overview of traces
    assert "Run Name" in text and "Model training" in text and "Trace ID" not in text, text[:1500]
    for column in ("method", "model", "dataset", "sparsity", "seed", "final/test_acc", "final/sparsity",
                   "cost/train_flops"):
        assert re.search(rf"(^| ){re.escape(column)}( |$)", text), (column, text[:1500])
    # the sweep as one group (MLflow keeps a parent run's expansion out of shared views, so the view
    # groups by the sweep tag): its parent run and its two jobs in it, the group opened
    assert "Group by: repro.sweep" in text
    parent, jobs = "sweep adhoc 2026-12-03/07-00-00", ("pmp s0.8 seed0 lenet300/mnist", "pmp s0.8 seed1 lenet300/mnist")
    assert text.count(parent) == 1 and all(text.count(j) == 1 for j in jobs), text[:3000]
    group = text.index("Group: 2026-12-03/07-00-00")
    assert all(group < text.index(name) for name in (parent, *jobs))
    assert "3 matching runs" in text
