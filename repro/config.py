"""Structured configs: the schema every YAML file under ``conf/`` is checked against.

Each config group has a dataclass registered in Hydra's ConfigStore, so a typo in a key
or a wrong type fails when the config is composed, before anything runs. Pruners that
carry extra knobs extend :class:`PrunerConfig`; their YAML files name their schema in
their defaults list. Cross-field rules that a type cannot express live in
:func:`validate`, which raises :class:`ConfigError` with a one-line message naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class ConfigError(ValueError):
    """A configuration that composes but cannot run; the message names the fix."""


@dataclass
class ModelConfig:
    name: str = MISSING
    #: channel multiplier for the CNNs (CPU-scale CIFAR runs); ignored by the LeNets
    width: float = 1.0


@dataclass
class DataConfig:
    name: str = MISSING  # mnist | fashion_mnist | cifar10
    #: where datasets live; the default reads REPRO_DATA_DIR, else ./data
    root: str = "${oc.env:REPRO_DATA_DIR,data}"
    #: auto | official | jpeg | debian -- which copy of the dataset to read
    source: str = "auto"
    #: training images held out as a validation split (0 = none)
    val_size: int = 0
    #: pad-4 random crop + horizontal flip (CIFAR); ignored for MNIST-like data
    augment: bool = True
    #: where decoded uint8 tensors are cached (decode once)
    cache_dir: str = "${oc.env:REPRO_CACHE_DIR,.cache/repro}"
    #: try torchvision's download when no local copy is found
    download: bool = True
    #: use a fixed random subset of N training images (0 = all); for smoke tests and tiny budgets
    train_subset: int = 0
    #: use a fixed random subset of N test images (0 = all)
    test_subset: int = 0


@dataclass
class ScheduleConfig:
    """How the target sparsity moves during training (PMP, GMP)."""

    name: str = "linear"  # linear | cubic | exponential | constant
    initial_sparsity: float = 0.0
    #: window start and end as fractions of the whole run (presets scale with epochs)
    start: float = 0.0
    end: float = 0.5
    #: recompute the mask every this many units
    update_frequency: int = 50
    update_unit: str = "iterations"  # iterations | epochs


@dataclass
class PrunerConfig:
    """What every pruning method shares: the prunable set and how scores are ranked."""

    name: str = "dense"
    scope: str = "global"  # global | layerwise
    exclude_first: bool = False
    exclude_last: bool = False


@dataclass
class SnipConfig(PrunerConfig):
    name: str = "snip"
    num_batches: int = 1
    #: batch size of the scoring batches (null = 100 for MNIST-like data, 128 for CIFAR)
    batch_size: int | None = None


@dataclass
class GraspConfig(PrunerConfig):
    name: str = "grasp"
    temperature: float = 200.0
    samples_per_class: int = 10
    num_iters: int = 1


@dataclass
class SynflowConfig(PrunerConfig):
    name: str = "synflow"
    rounds: int = 100
    #: score in float64 (against overflow of the synaptic flow in deep nets; float32 on MPS)
    float64: bool = True


@dataclass
class RandomConfig(PrunerConfig):
    name: str = "random"


@dataclass
class LTHConfig(PrunerConfig):
    name: str = "lth"
    #: target sparsities served by one chain (empty = just the top-level ``sparsity``)
    targets: list[float] = field(default_factory=list)
    #: fraction of the remaining weights removed per round
    rate: float = 0.2
    #: per-layer rates (layer name -> rate), e.g. the output layer at 0.1 for LeNet
    layer_rates: Any = field(default_factory=dict)
    #: rewind to this optimizer step (0 = the initialisation)
    rewind_step: int = 0


@dataclass
class OneshotConfig(PrunerConfig):
    name: str = "oneshot"
    finetune_epochs: int = 1


@dataclass
class MaskFromConfig(PrunerConfig):
    name: str = "mask_from"
    #: an MLflow run id (its final_state_dict.pt artifact) or a .pt file holding *.weight_mask entries
    source: str = ""
    init: str = "original"  # original (this seed's init) | random (a fresh draw)
    #: train dense for this many steps before the mask applies (a rewind point)
    rewind_step: int = 0
    #: a random mask with the saved per-layer densities instead of the saved mask
    shuffle: bool = False


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    lr_schedule: str = "multistep"  # multistep | cosine | constant
    #: multistep decay points as fractions of the run
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    warmup_epochs: int = 0


@dataclass
class TrainerConfig:
    epochs: int = 2
    batch_size: int = 128
    eval_batch_size: int = 1000
    device: str = "auto"  # auto | cpu | cuda
    #: evaluate on the test set every N epochs (the last epoch always)
    eval_every: int = 1
    #: CPU threads for torch (0 = leave torch's default)
    threads: int = 0
    #: glibc: keep freed memory for reuse instead of returning it to the system (CPU speed;
    #: process-wide, see repro.runtime); false leaves malloc's defaults
    reuse_memory: bool = True
    init: str = "kaiming_normal"  # kaiming_normal | xavier_normal | default
    progress: str = "auto"  # auto | bar | log | none
    precision: str = "auto"  # auto (bf16 on GPUs that compute it natively, else fp32) | fp32 | bf16
    channels_last: str = "auto"  # auto (CUDA conv nets) | "true" | "false"
    compile: bool = False
    #: checkpoint every N epochs (0 = never); resume needs checkpoints
    checkpoint_every: int = 1
    checkpoint_dir: str = "${oc.env:REPRO_CKPT_DIR,checkpoints}"
    #: keep the final weights as an MLflow artifact
    save_model: bool = True


@dataclass
class TrackingConfig:
    enabled: bool = True
    #: MLflow tracking URI; null = $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    uri: str | None = None
    experiment: str = "repro"


@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    pruner: PrunerConfig = MISSING
    schedule: ScheduleConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = MISSING
    seed: int = 0
    #: final fraction of prunable weights that are zero
    sparsity: float = 0.0
    #: train again even when a FINISHED run with the same identity exists
    rerun: bool = False
    #: a free-form label recorded as a tag (profiles set it)
    profile: str = "adhoc"


SCHEMAS: dict[str, tuple[str, type]] = {
    "schema_model": ("model", ModelConfig),
    "schema_data": ("data", DataConfig),
    "schema_schedule": ("schedule", ScheduleConfig),
    "schema_optim": ("optim", OptimConfig),
    "schema_tracking": ("tracking", TrackingConfig),
    "schema_pruner": ("pruner", PrunerConfig),
    "schema_snip": ("pruner", SnipConfig),
    "schema_grasp": ("pruner", GraspConfig),
    "schema_synflow": ("pruner", SynflowConfig),
    "schema_random": ("pruner", RandomConfig),
    "schema_lth": ("pruner", LTHConfig),
    "schema_oneshot": ("pruner", OneshotConfig),
    "schema_mask_from": ("pruner", MaskFromConfig),
}


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="schema_config", node=Config)
    for name, (group, node) in SCHEMAS.items():
        cs.store(group=group, name=name, node=node)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: Any) -> None:
    """Cross-field checks that types cannot express. Raises ConfigError (one line)."""
    s = cfg.sparsity
    _require(0.0 <= s < 1.0, f"sparsity={s} is impossible: use a fraction in [0, 1), e.g. sparsity=0.9")
    _require(cfg.trainer.epochs >= 1, f"trainer.epochs={cfg.trainer.epochs}: train at least one epoch")
    _require(cfg.trainer.batch_size >= 1, "trainer.batch_size must be >= 1")
    t = cfg.trainer
    _require(t.device in ("auto", "cpu", "cuda"), f"trainer.device={t.device}: use auto, cpu or cuda")
    _require(t.precision in ("auto", "fp32", "bf16"), f"trainer.precision={t.precision}: use auto, fp32 or bf16")
    _require(cfg.trainer.init in ("kaiming_normal", "xavier_normal", "default"),
             f"trainer.init={cfg.trainer.init}: use kaiming_normal, xavier_normal or default")
    _require(t.progress in ("auto", "bar", "log", "none"), f"trainer.progress={t.progress}: use auto, bar, log or none")
    _require(str(cfg.trainer.channels_last) in ("auto", "true", "false", "True", "False"),
             f"trainer.channels_last={cfg.trainer.channels_last}: use auto, true or false")
    _require(cfg.data.source in ("auto", "official", "jpeg", "debian"),
             f"data.source={cfg.data.source}: use auto, official, jpeg or debian")
    _require(cfg.data.val_size >= 0, "data.val_size must be >= 0")
    _require(cfg.pruner.scope in ("global", "layerwise"), f"pruner.scope={cfg.pruner.scope}: use global or layerwise")
    o = cfg.optim
    _require(o.name in ("sgd", "adam", "adamw"), f"optim.name={o.name}: use sgd, adam or adamw")
    _require(o.lr_schedule in ("multistep", "cosine", "constant"),
             f"optim.lr_schedule={o.lr_schedule}: use multistep, cosine or constant")
    _require(all(0.0 < m <= 1.0 for m in o.milestones),
             f"optim.milestones={list(o.milestones)}: give fractions of the run in (0, 1]")
    sch = cfg.schedule
    _require(sch.name in ("linear", "cubic", "exponential", "constant"),
             f"schedule.name={sch.name}: use linear, cubic, exponential or constant")
    _require(0.0 <= sch.start <= sch.end, f"schedule window start={sch.start} end={sch.end}: need 0 <= start <= end")
    _require(sch.end <= 1.0, f"schedule.end={sch.end} lies past the end of training: use a fraction of the run <= 1.0")
    _require(0.0 <= sch.initial_sparsity <= s,
             f"schedule.initial_sparsity={sch.initial_sparsity} exceeds sparsity={s}: lower it")
    _require(sch.update_frequency >= 1, "schedule.update_frequency must be >= 1")
    _require(sch.update_unit in ("iterations", "epochs"), f"schedule.update_unit={sch.update_unit}: use iterations or epochs")
    targets = list(getattr(cfg.pruner, "targets", []) or [])
    for t in targets:
        _require(0.0 < t < 1.0, f"pruner.targets contains {t}: every target must lie in (0, 1)")
