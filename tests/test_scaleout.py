"""Scale-out on Hydra's launchers (issue 9): joblib, submitit (local, SLURM), one job per GPU,
and a team MLflow server over HTTP with a PostgreSQL backend store (slow test)."""

from __future__ import annotations

import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from repro import records, scaleout
from tests.conftest import ROOT, needs_mnist, repro_train, runs_of

#: a run that trains in about a second; tracking only sees what the test needs
TINY = ("model=lenet300", "data=mnist", "trainer.epochs=1", "data.train_subset=500", "data.test_subset=500",
        "trainer.threads=1", "trainer.save_model=false", "hydra.sweep.dir=sweep")
#: job logs that name the process: "pid=123 repro.train final: ..."
PID_LOG = 'hydra.job_logging.formatters.simple.format="pid=%(process)d %(name)s %(message)s"'


def finished(uri: str) -> list:
    runs = runs_of(uri)
    assert [r.info.status for r in runs] == ["FINISHED"] * len(runs), [(r.info.run_name, r.info.status) for r in runs]
    return runs


def job_logs(cwd: Path) -> dict[int, str]:
    """Hydra's per-job log files of the sweep in ``cwd/sweep``, by job number."""
    return {int(p.parent.name): p.read_text() for p in (cwd / "sweep").glob("*/train.log")}


def pid_of(log: str) -> int:
    return int(re.search(r"^pid=(\d+) repro\.train final:", log, re.M).group(1))


# ---------------------------------------------------------------------- launchers, local


@pytest.mark.slow
@needs_mnist
def test_joblib_two_job_sweep_finishes_two_runs(train_cli):
    proc = train_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, "seed=0,1")
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    runs = finished(train_cli.uri)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert len({r.info.run_id for r in runs}) == 2


@pytest.mark.slow
@needs_mnist
def test_submitit_local_two_job_sweep_finishes_two_runs(train_cli):
    train_cli("-m", "hydra/launcher=submitit_local", PID_LOG, *TINY, "seed=0,1")
    runs = finished(train_cli.uri)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    logs = job_logs(train_cli.cwd)
    # every submitit job is a process of its own
    assert sorted(logs) == [0, 1] and pid_of(logs[0]) != pid_of(logs[1])
    assert len(list((train_cli.cwd / "sweep" / ".submitit").glob("*/*_result.pkl"))) == 2


@pytest.mark.slow
@needs_mnist
def test_gpu_node_reused_workers_keep_their_gpu_and_share_no_state(train_cli, tmp_path):
    """hydra/launcher=gpu_node with two (pretend) GPUs: two loky workers, three jobs, so a
    worker runs a second job. Each worker holds one GPU slot for life and sets
    CUDA_VISIBLE_DEVICES to it; a job in a reused worker reproduces the fresh-process run
    of the same config metric for metric (seeding, MLflow run ids and the RNG are per job).
    The same run twice on purpose: the basic sweeper (the planned one would leave job 2 out)
    and a checkpoint folder per job, each job in its own sweep folder (the run lock would
    refuse job 2 while job 0 trains)."""
    locks = tmp_path / "gpu-locks"
    proc = train_cli("-m", "hydra/launcher=gpu_node", "hydra/sweeper=basic", "hydra.callbacks.gpu_slots.gpus=[0,1]",
              f"hydra.callbacks.gpu_slots.lock_dir={locks}", PID_LOG, *TINY,
              "rerun=true", "trainer.checkpoint_every=0", "hydra.job.chdir=true", "trainer.checkpoint_dir=checkpoints",
              "seed=0,1,0")
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr, "n_jobs = GPUs x jobs_per_gpu"
    runs = finished(train_cli.uri)
    assert len(runs) == 3 and len({r.info.run_id for r in runs}) == 3

    logs = job_logs(train_cli.cwd)
    assert sorted(logs) == [0, 1, 2]
    gpu_of_pid: dict[int, set[str]] = defaultdict(set)
    for num, log in logs.items():
        gpus = re.findall(rf"job {num}: pid (\d+) holds GPU slot \S+ \(CUDA_VISIBLE_DEVICES=(\w+)\)", log)
        assert len(gpus) == 1, log
        assert int(gpus[0][0]) == pid_of(log)
        gpu_of_pid[pid_of(log)].add(gpus[0][1])
    assert len(gpu_of_pid) in (1, 2), "three jobs on two workers: a worker ran two of them"
    assert all(len(g) == 1 for g in gpu_of_pid.values()), "a worker keeps its GPU"
    held = [next(iter(g)) for g in gpu_of_pid.values()]
    assert len(set(held)) == len(held), "no two workers hold the same GPU"
    assert {p.name for p in locks.iterdir()} <= {"gpu0.slot0.lock", "gpu1.slot0.lock"}

    by_seed = defaultdict(list)
    for r in runs:
        by_seed[r.data.params["seed"]].append(r.data.metrics)
    first, again = by_seed["0"]
    keys = ("train/loss", "train/acc", "test/loss", "test/acc", "final/test_acc")
    assert {k: first[k] for k in keys} == {k: again[k] for k in keys}
    assert by_seed["1"][0]["train/loss"] != first["train/loss"]


# ---------------------------------------------------------------------- GPU slots, unit


#: a process that leases one of two GPU slots, prints "<device> <CUDA_VISIBLE_DEVICES>", and
#: holds the slot until its stdin closes
HOLDER = """
import os, sys
from repro import scaleout
try:
    device = scaleout.lease_gpu(["0", "1"], 1, sys.argv[1], poll_s=0.05, timeout_s=float(sys.argv[2]))
except TimeoutError:
    print("timeout", flush=True)
    sys.exit(0)
scaleout.pin_to_gpu(device)
print(device, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
sys.stdin.read()
"""


def _holder(lock_dir: Path, timeout_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir), str(timeout_s)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _said(proc: subprocess.Popen, timeout_s: float = 60) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, "the slot holder said nothing"
    return proc.stdout.readline().strip()


def test_gpu_slots_are_exclusive_and_freed_when_the_process_exits(tmp_path):
    procs = [_holder(tmp_path, 30), _holder(tmp_path, 30)]
    try:
        assert sorted(_said(p) for p in procs) == ["0 0", "1 1"]
        late = _holder(tmp_path, 0.5)
        procs.append(late)
        assert _said(late) == "timeout", "a third process finds no free slot"
        procs[0].kill()  # a crashed holder: the kernel drops its lock
        procs[0].wait(30)
        retry = _holder(tmp_path, 30)
        procs.append(retry)
        assert _said(retry) in ("0 0", "1 1")
    finally:
        for p in procs:
            if p.poll() is None:
                p.stdin.close()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(30)


def test_visible_gpus_and_slot_count(monkeypatch):
    assert scaleout.visible_gpus("0, 2") == ["0", "2"]
    assert scaleout.visible_gpus([1, 3]) == ["1", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaa,GPU-bbb,GPU-ccc")
    assert scaleout.visible_gpus() == ["GPU-aaa", "GPU-bbb", "GPU-ccc"]
    assert scaleout.gpu_slots(None, 2) == 6
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert scaleout.visible_gpus() == [] and scaleout.gpu_slots(None, 1) == 1


# ---------------------------------------------------------------------- SLURM preset, dry


def _noop_task(cfg):  # pragma: no cover - never runs: the submission is intercepted
    return None


def test_slurm_gpu_preset_renders_a_gpu_job_array(tmp_path, monkeypatch):
    """conf/hydra/launcher/slurm_gpu.yaml through the real submitit launcher up to sbatch:
    the script it would submit asks for the partition, one GPU, the time limit and a
    throttled array (no cluster needed: a stub srun, and the submission is intercepted)."""
    import submitit.slurm.slurm as slurm
    from hydra import compose, initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext

    from repro.config import register_configs

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("REPRO_SLURM_PARTITION", "gpu-a100")

    class Submitted(Exception):
        pass

    def intercept(self, command):
        raise Submitted(self._make_submission_file_text(command, "uid"))

    monkeypatch.setattr(slurm.SlurmExecutor, "_submit_command", intercept)
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True, overrides=[
            "hydra/launcher=slurm_gpu", f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.launcher.array_parallelism=2"])
    launcher = Plugins.instance().instantiate_launcher(
        config=cfg, hydra_context=HydraContext(config_loader=None, callbacks=Callbacks()), task_function=_noop_task)
    with pytest.raises(Submitted) as sbatch:
        launcher.launch([["seed=0"], ["seed=1"], ["seed=2"]], initial_job_idx=0)
    script = sbatch.value.args[0]
    for line in ("--array=0-2%2", "--partition=gpu-a100", "--gpus-per-node=1", "--ntasks-per-node=1",
                 "--cpus-per-task=8", "--time=720", "--mem=32GB"):
        assert f"#SBATCH {line}\n" in script, script
    assert f"{sys.executable} -u -m submitit.core._submit" in script


# ---------------------------------------------------------------------- team server, slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries (Debian: /usr/lib/postgresql/<v>/bin), else PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl and Path(pg_ctl).with_name("initdb").exists() else None


def _http(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"{}")


def _wait_until(check, timeout_s: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"{what} did not come up within {timeout_s:g}s\n{tail}")


def _stop_group(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM the session ``proc`` leads (the server and the workers it started), SIGKILL what outlives it."""

    def alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not alive():
            break
        os.killpg(proc.pid, sig)
        deadline = time.monotonic() + timeout_s
        while alive() and time.monotonic() < deadline:
            proc.poll()  # reap the leader so the group can empty
            time.sleep(0.2)
    proc.poll()


@pytest.mark.slow
@needs_mnist
def test_team_server_postgres_backend_over_http(tmp_path):
    """A real PostgreSQL on loopback, a real `mlflow server` on 127.0.0.1 using it as backend
    store (artifacts proxied into a directory), and a two-job joblib sweep with tracking=server
    logging over HTTP; checked through the REST API and in PostgreSQL itself."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: run `make postgres` "
                    "(apt-get install postgresql) and try again")
    try:
        import psycopg2
    except ImportError:
        pytest.skip("psycopg2 missing: pip install -e '.[server]'")
    as_user: dict = {}
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the `postgres` system user
        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` system user to run PostgreSQL as")
        as_user = {"user": pg_user.pw_uid, "group": pg_user.pw_gid, "extra_groups": []}

    work = Path(tempfile.mkdtemp(prefix="repro-pg-"))  # in /tmp, which the postgres user can reach
    if as_user:
        os.chown(work, as_user["user"], as_user["group"])
    data, pg_log, mlflow_log = work / "data", work / "postgres.log", tmp_path / "mlflow-server.log"
    pg_port, http_port = _free_port(), _free_port()
    pg_started, server = False, None
    url = f"http://127.0.0.1:{http_port}"
    try:
        subprocess.run([pg_bin / "initdb", "-D", data, "-U", "mlflow", "-A", "trust", "-E", "UTF8", "--no-locale"],
                       cwd=work, check=True, capture_output=True, timeout=120, **as_user)
        subprocess.run([pg_bin / "pg_ctl", "-D", data, "-l", pg_log, "-w", "-t", "60", "-o",
                        f"-c listen_addresses=127.0.0.1 -p {pg_port} -k {work}", "start"],
                       cwd=work, check=True, capture_output=True, timeout=90, **as_user)
        pg_started = True
        subprocess.run([pg_bin / "createdb", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "mlflow", "mlflow"],
                       check=True, capture_output=True, timeout=60)
        backend = f"postgresql+psycopg2://mlflow@127.0.0.1:{pg_port}/mlflow"

        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(mlflow_log, "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                 "--artifacts-destination", str(work / "artifacts"), "--host", "127.0.0.1", "--port", str(http_port),
                 "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        _wait_until(lambda: urllib.request.urlopen(f"{url}/health", timeout=5).status == 200, 180, "mlflow server",
                    server, mlflow_log)

        # MLFLOW_TRACKING_URI points at a local SQLite file: tracking=server must win over it
        local = tmp_path / "local.db"
        repro_train("-m", "tracking=server", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, "seed=0,1",
                    cwd=tmp_path, uri=f"sqlite:///{local}", env={"REPRO_MLFLOW_SERVER": url}, timeout=600)
        assert not local.exists()

        api = f"{url}/api/2.0/mlflow"
        exp = _http(f"{api}/experiments/get-by-name?experiment_name=repro")["experiment"]
        found = _http(f"{api}/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]

        def kind(r):
            return {t["key"]: t["value"] for t in r["data"].get("tags", [])}.get(records.KIND_TAG)

        # the multirun is one parent run over the server too, its jobs are the children
        (parent,) = [r for r in found if kind(r) == records.KIND_SWEEP]
        runs = [r for r in found if kind(r) != records.KIND_SWEEP]
        assert parent["info"]["status"] == "FINISHED"
        assert sorted(r["info"]["status"] for r in runs) == ["FINISHED", "FINISHED"]
        assert sorted(r["info"]["run_name"] for r in runs) == ["dense seed0 lenet300/mnist", "dense seed1 lenet300/mnist"]
        for run in runs:
            rid = run["info"]["run_id"]
            metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
            assert 0.0 < metrics["final/test_acc"] <= 100.0 and metrics["final/sparsity"] == 0.0
            history = _http(f"{api}/metrics/get-history?" + urllib.parse.urlencode({"run_id": rid, "metric_key": "test/acc"}))
            assert len(history["metrics"]) == 1  # one epoch: one point
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            assert params["tracking.uri"] == url
            files = {f["path"] for f in _http(f"{api}/artifacts/list?run_id={rid}").get("files", [])}
            assert {"config.yaml", "layer_density.csv"} <= files
        with psycopg2.connect(host="127.0.0.1", port=pg_port, user="mlflow", dbname="mlflow") as conn, conn.cursor() as cur:
            cur.execute("SELECT run_uuid, status FROM runs")
            assert sorted(cur.fetchall()) == sorted((r["info"]["run_id"], "FINISHED") for r in [*runs, parent])
        conn.close()
    finally:
        if server is not None:
            _stop_group(server)
        if pg_started:
            stop = subprocess.run([pg_bin / "pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop"],
                                  cwd=work, capture_output=True, timeout=60, **as_user)
            if stop.returncode != 0:
                subprocess.run([pg_bin / "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"],
                               cwd=work, capture_output=True, timeout=60, **as_user)
        shutil.rmtree(work, ignore_errors=True)
