"""``repro-train``: the Hydra entry point. Compose, resolve identity, wire the parts, run,
and always finish the MLflow run (FINISHED, or FAILED with the reason as a tag).

    repro-train model=lenet300 data=mnist pruner=pmp sparsity=0.9
    repro-train -m pruner=pmp,snip,grasp sparsity=0.5,0.9,0.98 seed=0,1,2
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from repro import data as data_mod
from repro import models, run_context, runlock
from repro import records as rec
from repro import runtime as runtime_mod
from repro import threads as threads_mod
from repro.config import ConfigError, register_configs, validate
from repro.engine import Engine, LoopConfig, initialize, resolve_device
from repro.engine import checkpoint as ckpt_io
from repro.export.pipeline import after_training
from repro.identity import Resolved, Uses, group_identity, legacy_identity, run_identity
from repro.pruning import methods
from repro.pruning.masks import MaskSet, check_integrity
from repro.sweep_run import parent_of_job
from repro.tracking import NullTracker, Tracker, flatten, git_info

log = logging.getLogger("repro.train")

#: errors a user fixes by changing the command: reported in one line, no traceback
USER_ERRORS = (ConfigError, data_mod.DataError, ValueError, RuntimeError)

register_configs()


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster's preemption, ``kill``): the run ends KILLED, as on Ctrl-C."""


@contextlib.contextmanager
def _signal_handlers(handlers: dict[int, Any]):
    """Install ``handlers`` for the duration of the block, then put the previous ones back.
    Off the main thread Python refuses signal handlers: signals stay with whoever owns them."""
    try:
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated("terminated (SIGTERM)")


def _sigterm_interrupts():
    """Turn SIGTERM into :class:`Terminated` while a run trains (without a handler the
    process dies at once and leaves the MLflow run RUNNING forever)."""
    return _signal_handlers({signal.SIGTERM: _raise_terminated})


@contextlib.contextmanager
def _shielded():
    """Defer SIGINT and SIGTERM while the run's end is written (a second Ctrl-C right after the
    first would otherwise interrupt it and leave the run RUNNING), then deliver them."""
    pending: list[int] = []
    with _signal_handlers({sig: lambda signum, frame: pending.append(signum) for sig in (signal.SIGINT, signal.SIGTERM)}):
        yield
    for sig in pending:
        signal.raise_signal(sig)


class JobFailed(Exception):
    """A job of a multirun failed; the sweep goes on and the command exits non-zero."""


def _hydra_overrides() -> str:
    try:
        return " ".join(HydraConfig.get().overrides.task)
    except ValueError:
        return ""


def _sweep_parent() -> dict[str, str] | None:
    """The parent run of this job's sweep (repro.sweep_run), or None outside a multirun."""
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    return parent_of_job(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None


def _is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What a run is, fixed before it starts: the facts the config alone does not decide
    (method class, device, precision, data copy) and, once resolved, its identity, group,
    checkpoint file and tags. Frozen: nothing downstream changes what the run is."""

    method_cls: type[methods.Method]
    device: torch.device
    precision: str
    data_source: str
    identity: str = ""
    group: str = ""
    checkpoint: Path | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)


def resolve_runtime(cfg: DictConfig) -> RunSpec:
    """Facts the identity needs that the config alone does not fix; refuses what cannot run."""
    if cfg.pruner.name not in methods.REGISTRY:
        raise ConfigError(f"unknown pruner '{cfg.pruner.name}': choose one of {', '.join(sorted(methods.REGISTRY))}")
    if cfg.model.name not in models.REGISTRY:
        raise ConfigError(f"unknown model '{cfg.model.name}': choose one of {', '.join(sorted(models.REGISTRY))}")
    method_cls = methods.REGISTRY[cfg.pruner.name]
    device = resolve_device(cfg.trainer.device) if cfg.trainer.device in ("auto", "cpu", "cuda") else torch.device("cpu")
    precision = runtime_mod.resolve_precision(cfg.trainer.precision, device)
    if cfg.data.name not in data_mod.SPECS:
        raise data_mod.DataError(data_mod.unknown_dataset(cfg.data.name))
    source = data_mod.locate(cfg.data.name, cfg.data.root, cfg.data.source)
    if source == "missing" and not cfg.data.download:
        raise data_mod.DataError(f"no copy of {cfg.data.name} (data.source={cfg.data.source}) under data.root="
                                 f"{cfg.data.root}: point REPRO_DATA_DIR or data.root at it, or allow data.download=true")
    return RunSpec(method_cls=method_cls, device=device, precision=precision, data_source=source)


def run_name(cfg: DictConfig, method_cls: type, target: float | None = None) -> str:
    """``pmp s0.9 seed0 lenet300/mnist``: what tells a sweep's runs apart comes first, where the
    MLflow runs table's narrow name column still shows it (model and dataset have columns)."""
    parts = [cfg.pruner.name]
    if target is not None:
        parts.append(f"t{target:g}")
    elif method_cls.reports_chain(cfg.pruner):
        parts.append("chain")
    elif method_cls.uses_sparsity:
        parts.append(f"s{cfg.sparsity:g}")
    parts += [f"seed{cfg.seed}", f"{cfg.model.name}/{cfg.data.name}"]
    return " ".join(parts)


def train(cfg: DictConfig, spec: RunSpec, tracker: Any) -> dict[str, float]:
    """Build data, model, masks and method; run the loop; check invariants; log results."""
    device = spec.device
    # per job, so a reused worker process (joblib) carries nothing over from the last job
    threads_mod.start(cfg.trainer.threads, tracker.set_tags)  # 0: a share of the cores (repro.threads)
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    if cfg.trainer.reuse_memory:
        runtime_mod.keep_freed_memory()
    tracker.set_tags(runtime_mod.use_precision(spec.precision))
    d = cfg.data
    dataset = data_mod.load(d.name, d.root, source=d.source, val_size=d.val_size, download=d.download,
                            cache_dir=d.cache_dir, train_subset=d.train_subset, test_subset=d.test_subset)
    tracker.set_tags({rec.DATA_SOURCE_TAG: dataset.source})
    tracker.log_dataset(dataset, cfg)

    torch.manual_seed(cfg.seed)
    model = models.build(cfg.model.name, num_classes=dataset.num_classes, in_channels=dataset.in_channels,
                         width=cfg.model.width)
    initialize(model, cfg.trainer.init)
    method = spec.method_cls(_resolved_pruner(cfg, tracker), cfg.sparsity, cfg.schedule)
    masks = MaskSet(model, exclude_first=cfg.pruner.exclude_first, exclude_last=cfg.pruner.exclude_last,
                    exclude=list(cfg.pruner.exclude))
    tracker.log_metrics({rec.NUM_PRUNABLE: masks.num_prunable})
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    channels_last = {"auto": device.type == "cuda" and has_conv, "true": True, "false": False}[
        str(cfg.trainer.channels_last).lower()]
    loop = LoopConfig.from_trainer(
        cfg.trainer, seed=cfg.seed, augment=d.augment, precision=spec.precision, channels_last=channels_last,
        checkpoint_path=spec.checkpoint if cfg.trainer.checkpoint_every else None)
    flat_params = flatten(OmegaConf.to_container(cfg, resolve=True))

    def log_target(metrics: dict, cycle: int, target: float) -> None:
        """One target of a multi-target chain (LTH) as its own nested run, at exact sparsity."""
        check_integrity(masks, target, method.integrity_scope())
        # a target belongs to its chain run, not to the sweep that launched the chain
        tags = {k: v for k, v in base_tags.items() if k not in (rec.KIND_TAG, rec.PARENT_RUN_TAG, rec.SWEEP_TAG)}
        tracker.log_child(f"{spec.identity}:{target:g}", run_name(cfg, spec.method_cls, target),
                          {**tags, rec.CYCLE_TAG: str(cycle)}, {**flat_params, rec.SPARSITY_PARAM: str(target)}, metrics,
                          texts={rec.LAYER_DENSITY_ARTIFACT: density_csv(masks)})

    base_tags = spec.tags
    engine = Engine(model, dataset, method, masks, cfg.optim, loop, device, on_epoch=tracker.log_metrics,
                    on_cycle=log_target if spec.method_cls.reports_chain(cfg.pruner) else lambda *a: None,
                    on_update=tracker.log_metrics, on_mask=tracker.log_metrics)
    final = engine.run()

    target = method.final_target()
    if target is not None:
        check_integrity(masks, target, method.integrity_scope())
    # at the last step, so a metric that is also a series (mask/updates) ends where its series does
    tracker.log_metrics(final, step=engine.state.total_steps_run)
    tracker.log_text(density_csv(masks), rec.LAYER_DENSITY_ARTIFACT)
    tracker.set_tags({rec.LAYER_COLLAPSE_TAG: ",".join(masks.collapsed_layers()) or "none"})
    if cfg.trainer.save_model:
        tracker.log_torch(model.state_dict(), rec.FINAL_STATE_ARTIFACT)  # with its masks: mask_from, repro-export
    if cfg.tracking.log_model:
        tracker.log_model(model, cfg, dataset)  # masks folded in: runs:/<id>/model
    after_training(cfg, model, tracker)  # trainer.export=true: the subnetwork's sizes as metrics, its files as artifacts
    log.info("final: %s", ", ".join(f"{k}={v:.4g}" for k, v in final.items()))
    return final


def density_csv(masks: MaskSet) -> str:
    """The per-layer density table as CSV (an artifact of every run)."""
    return ",".join(rec.LAYER_DENSITY_COLUMNS) + "\n" + "".join(
        f"{r['layer']},{r['shape']},{r['weights']},{r['kept']},{r['density']:.6f}\n" for r in masks.density_table())


def _resolved_pruner(cfg: DictConfig, tracker: Any) -> Any:
    """The pruner config with ``source`` (mask_from) turned into a local file: an MLflow run id
    is fetched as that run's final_state_dict.pt artifact."""
    source = getattr(cfg.pruner, "source", None)
    if not source or Path(source).is_file():
        return cfg.pruner
    if not tracker.enabled:
        raise ConfigError(f"pruner.source={source} is not a file, and without tracking it cannot be a run id")
    import tempfile

    dst = Path(tempfile.mkdtemp(prefix="repro-mask-"))
    try:
        path = tracker.download(source, rec.FINAL_STATE_ARTIFACT, dst)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"pruner.source={source}: neither a file nor a run with final_state_dict.pt ({exc})") from None
    return OmegaConf.merge(cfg.pruner, {"source": str(path)})


def identities(cfg: DictConfig, spec: RunSpec) -> tuple[str, str, str | None]:
    """(run identity, group identity, identity under the old whole-config rule or None)."""
    method_cls = spec.method_cls
    uses = Uses(sparsity=method_cls.uses_sparsity and not method_cls.reports_chain(cfg.pruner),
                schedule=method_cls.uses_schedule,
                masks=method_cls.uses_masks)
    resolved = Resolved(device=spec.device.type, precision=spec.precision, data_source=spec.data_source)
    legacy = legacy_identity(cfg, uses, resolved)
    if cfg.pruner.name == "mask_from" and getattr(cfg.pruner, "rewind_step", 0):
        legacy = None  # its optimizer now restarts at the rewind step: old runs are another result
    return run_identity(cfg, uses, resolved), group_identity(cfg, uses, resolved), legacy


def find_existing(tracker: Any, cfg: DictConfig, identity: str, legacy: str | None, group: str = "") -> Any:
    """The run of this identity; a run recorded under the old identity rule is adopted
    (re-tagged, its checkpoint renamed) so that it is skipped or resumed as before."""
    existing = tracker.find(identity)
    if existing is not None or legacy is None:
        return existing
    old = tracker.find(legacy)
    if old is None:
        return None
    tracker.adopt(old.info.run_id, identity, legacy, group)
    ckpt_dir = Path(cfg.trainer.checkpoint_dir)
    if (ckpt_dir / f"{legacy}.pt").is_file() and not (ckpt_dir / f"{identity}.pt").exists():
        (ckpt_dir / f"{legacy}.pt").rename(ckpt_dir / f"{identity}.pt")
    return tracker.find(identity)


def run(cfg: DictConfig) -> dict[str, float] | None:
    """One job: skip if already FINISHED, resume if crashed, else start fresh.

    Everything a user can get wrong is checked before the tracker opens a store or a run.
    """
    try:
        spec = resolve_runtime(cfg)
        validate(cfg)
    except USER_ERRORS as exc:
        return _fail(None, exc)
    identity, group, legacy = identities(cfg, spec)
    try:  # an unusable store, or the run trained by another process: one line, no run touched
        tracker: Any = Tracker(cfg.tracking.uri, cfg.tracking.experiment) if cfg.tracking.enabled else NullTracker()
        lock = runlock.acquire(cfg.trainer.checkpoint_dir, identity)
    except USER_ERRORS as exc:
        return _fail(None, exc)
    with lock:
        return _run_owned(cfg, spec, tracker, identity, group, legacy)


def _run_owned(cfg: DictConfig, spec: RunSpec, tracker: Any, identity: str, group: str,
               legacy: str | None) -> dict[str, float] | None:
    """The part of :func:`run` done while holding the run's lock: skip, resume or start."""
    existing = find_existing(tracker, cfg, identity, legacy, group)
    sweep = _sweep_parent() if tracker.enabled else None
    if existing is not None and existing.info.status == "FINISHED" and not cfg.rerun:
        log.info("skipping: run %s with identity %s is FINISHED (rerun=true trains again)", existing.info.run_id, identity)
        tracker.join_profile(existing.info.run_id, cfg.profile)
        if sweep is not None:  # it stays under the sweep that trained it; this sweep links to it
            tracker.client.set_tag(existing.info.run_id, rec.skipped_by_tag(sweep["sweep"]), "1")
        return rec.current_metrics(existing.data.metrics)  # a run logged before the namespaces reads as new
    resume = existing.info.run_id if existing is not None and not cfg.rerun else None
    checkpoint = Path(cfg.trainer.checkpoint_dir) / f"{identity}.pt"
    ckpt_io.set_aside_if_unreadable(checkpoint)  # a truncated or foreign file: start afresh, not FAILED
    if checkpoint.is_file() and (cfg.rerun or (tracker.enabled and resume is None)):
        # a checkpoint without a run to resume (rerun, or a new tracking store) starts afresh
        checkpoint.unlink()
    tags = {
        **git_info(),
        rec.TORCH_VERSION_TAG: torch.__version__,
        rec.DEVICE_TAG: spec.device.type,
        rec.DATA_SOURCE_TAG: spec.data_source,
        rec.METHOD_TAG: cfg.pruner.name,
        rec.MODEL_TAG: cfg.model.name,
        rec.DATASET_TAG: cfg.data.name,
        rec.PROFILE_TAG: cfg.profile,
        rec.profile_tag(cfg.profile): "1",
        rec.HYDRA_OVERRIDES_TAG: _hydra_overrides(),
        rec.GROUP_TAG: group,
    }
    if spec.method_cls.reports_chain(cfg.pruner):
        tags[rec.KIND_TAG] = rec.KIND_CHAIN  # the report reads the nested per-target runs, not the chain
    if sweep is not None:  # a job of a sweep: a child of the sweep's parent run (repro.sweep_run)
        tags[rec.PARENT_RUN_TAG] = sweep["run_id"]
        tags[rec.SWEEP_TAG] = sweep["sweep"]
    spec = dataclasses.replace(spec, identity=identity, group=group, checkpoint=checkpoint, tags=tags)
    tracker.start(identity, run_name(cfg, spec.method_cls), tags, resume_run_id=resume)
    tracker.describe(run_context.description(run_context.command_line(), tags[rec.HYDRA_OVERRIDES_TAG]))
    if cfg.tracking.system_metrics:
        tracker.start_system_metrics(cfg.tracking.system_metrics_interval_s)
    try:
        with _sigterm_interrupts():
            tracker.log_params(flatten(OmegaConf.to_container(cfg, resolve=True)))
            tracker.log_text(OmegaConf.to_yaml(cfg, resolve=True), rec.CONFIG_ARTIFACT)
            final = train(cfg, spec, tracker)
    except KeyboardInterrupt as exc:
        with _shielded():
            tracker.end("KILLED", str(exc) if isinstance(exc, Terminated) else "interrupted")
        if isinstance(exc, Terminated):
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    except Exception as exc:  # noqa: BLE001 - every failure ends the run as FAILED with its reason
        return _fail(tracker, exc)
    with _shielded():
        tracker.end("FINISHED")
    return final


def _fail(tracker: Any, exc: Exception) -> None:
    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if tracker is not None:
        tracker.end("FAILED", message)
    if not isinstance(exc, USER_ERRORS):
        log.exception("run failed")
    if _is_multirun():
        log.error("job failed: %s", message)
        raise JobFailed(message) from None
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


#: conf/ beside the package (an editable install, or a checkout on PYTHONPATH)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    final = run(cfg)
    return None if final is None else final.get(rec.FINAL_TEST_ACC)


if __name__ == "__main__":
    # `python -m repro.train` goes through the same front door as the repro-train script
    from repro.cli import gate

    if gate(sys.argv[1:]):
        main()
