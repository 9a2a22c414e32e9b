"""Structured configs: the schema every YAML file under ``conf/`` is checked against.

Each config group has a dataclass registered in Hydra's ConfigStore, so a typo in a key
or a wrong type fails when the config is composed, before anything runs. Pruners that
carry extra knobs extend :class:`PrunerConfig`; their YAML files name their schema in
their defaults list. Cross-field rules that a type cannot express live in
:func:`validate`, which raises :class:`ConfigError` with a one-line message naming the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from repro.config_base import ConfigError, PrunerConfig, Range
from repro.pruning.density import SCOPES

__all__ = ["ConfigError", "PrunerConfig", "Range", "RANGES", "SCHEMAS", "register_configs", "validate"]



@dataclass
class ModelConfig:
    """The network (model=NAME picks one)."""

    name: str = MISSING
    #: channel multiplier for the CNNs (CPU-scale CIFAR runs); ignored by the LeNets
    width: float = 1.0


@dataclass
class DataConfig:
    """Which dataset, which copy of it and how much of it."""

    name: str = MISSING  # mnist | fashion_mnist | cifar10 | cifar100 (repro.data.SPECS)
    #: where datasets live; the default reads REPRO_DATA_DIR, else ./data
    root: str = "${oc.env:REPRO_DATA_DIR,data}"
    #: auto | official | jpeg | debian -- which copy of the dataset to read
    source: str = "auto"
    #: training images held out as a validation split (0 = none)
    val_size: int = 0
    #: pad-4 random crop + horizontal flip where the dataset's spec allows it (CIFAR); ignored for MNIST-like data
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
    """Optimizer and learning-rate schedule."""

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
    """The training loop: budget, batches, device, evaluation and checkpoints."""

    epochs: int = 2
    batch_size: int = 128
    eval_batch_size: int = 1000
    device: str = "auto"  # auto | cpu | cuda
    #: evaluate on the test set every N epochs (the last epoch always)
    eval_every: int = 1
    #: CPU threads for torch (0 = auto: cores // training processes running, repro.threads)
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
    #: at the end of a run, export the subnetwork in the CSR layout (repro.export): sizes as metrics, folder as artifact
    export: bool = False


@dataclass
class TrackingConfig:
    """Where MLflow records runs."""

    enabled: bool = True
    #: MLflow tracking URI; null = $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    uri: str | None = None
    experiment: str = "repro"


@dataclass
class Config:
    """One training run: the groups above plus the top-level keys."""

    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    pruner: PrunerConfig = MISSING
    schedule: ScheduleConfig = MISSING
    optim: OptimConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = MISSING
    #: seeds the init, data order, augmentation and the random methods
    seed: int = 0
    #: final fraction of prunable weights that are zero, in [0, 1)
    sparsity: float = 0.0
    #: train again even when a FINISHED run with the same identity exists
    rerun: bool = False
    #: a free-form label recorded as a tag (profiles set it)
    profile: str = "adhoc"


#: Hydra's ConfigStore group that holds the schemas. It lies outside the user-facing groups
#: (model, pruner, ...), so its entries never show up as options of those groups, in
#: ``repro-train --help`` or in Hydra's "Available options" listings. A YAML file names its
#: schema with an absolute path placed at its own package: ``- /schema/pruner/lth@_here_``.
SCHEMA_GROUP = "schema"

#: config path under ``schema/`` -> dataclass
SCHEMAS: dict[str, type] = {
    "config": Config,
    "model": ModelConfig,
    "data": DataConfig,
    "schedule": ScheduleConfig,
    "optim": OptimConfig,
    "tracking": TrackingConfig,
    "pruner/base": PrunerConfig,
    "pruner/snip": SnipConfig,
    "pruner/grasp": GraspConfig,
    "pruner/synflow": SynflowConfig,
    "pruner/random": RandomConfig,
    "pruner/lth": LTHConfig,
    "pruner/oneshot": OneshotConfig,
    "pruner/mask_from": MaskFromConfig,
}


def _plug_in_methods() -> None:
    """Add every registered method's own schema and ranges (``Method.Config``, ``Method.ranges``):
    a method module brings its schema with it. Importing repro.pruning imports every method module."""
    from repro.pruning.methods import REGISTRY

    for name, cls in REGISTRY.items():
        if cls.Config is not None:
            SCHEMAS.setdefault(f"pruner/{name}", cls.Config)


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore under ``schema/`` (idempotent)."""
    cs = ConfigStore.instance()
    for path, node in SCHEMAS.items():
        group, _, name = f"{SCHEMA_GROUP}/{path}".rpartition("/")
        cs.store(group=group, name=name, node=node)


#: Every numeric key of the schemas above and its stated range. A value outside it would
#: otherwise surface late (trainer.eval_every=0 as a ZeroDivisionError after the run
#: started) or not at all (data.train_subset=-4990 trained on 55,010 images). Keys of one
#: pruner apply only when that pruner is chosen. tests/test_front_door.py checks that no
#: numeric field of a schema is missing here or in RANGES_CHECKED_ELSEWHERE.
RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32, hi_open=True, fix="use a seed in [0, 2**32), e.g. seed=0"),
    "model.width": Range(0, lo_open=True, fix="scale the channels by a factor > 0, e.g. model.width=0.5"),
    "data.val_size": Range(0, fix="hold out N >= 0 training images (0 = no validation split)"),
    "data.train_subset": Range(0, fix="train on N >= 0 images (0 = all of them)"),
    "data.test_subset": Range(0, fix="test on N >= 0 images (0 = all of them)"),
    "schedule.update_frequency": Range(1, fix="update the mask every N >= 1 units, e.g. schedule.update_frequency=50"),
    "pruner.num_batches": Range(1, fix="score on N >= 1 batches, e.g. pruner.num_batches=1"),
    "pruner.batch_size": Range(1, fix="use a scoring batch size >= 1, or null for the dataset's default"),
    "pruner.temperature": Range(0, lo_open=True, fix="use a temperature > 0, e.g. pruner.temperature=200"),
    "pruner.samples_per_class": Range(1, fix="use N >= 1 samples per class, e.g. pruner.samples_per_class=10"),
    "pruner.num_iters": Range(1, fix="use N >= 1 scoring iterations, e.g. pruner.num_iters=1"),
    "pruner.rounds": Range(1, fix="use N >= 1 pruning rounds, e.g. pruner.rounds=100"),
    "pruner.rate": Range(0, 1, lo_open=True, hi_open=True, fix="remove a fraction in (0, 1) per round, e.g. pruner.rate=0.2"),
    "pruner.rewind_step": Range(0, fix="rewind to an optimizer step >= 0 (0 = the initialisation)"),
    "pruner.finetune_epochs": Range(1, fix="fine-tune at least one epoch, e.g. pruner.finetune_epochs=1"),
    "optim.lr": Range(0, lo_open=True, fix="use a learning rate > 0, e.g. optim.lr=0.1"),
    "optim.momentum": Range(0, 1, hi_open=True, fix="use a momentum in [0, 1), e.g. optim.momentum=0.9"),
    "optim.weight_decay": Range(0, fix="use a weight decay >= 0, e.g. optim.weight_decay=5e-4"),
    "optim.gamma": Range(0, 1, lo_open=True, fix="use an LR decay factor in (0, 1], e.g. optim.gamma=0.1"),
    "optim.warmup_epochs": Range(0, fix="warm up for N >= 0 epochs (0 = no warmup)"),
    "trainer.epochs": Range(1, fix="train at least one epoch, e.g. trainer.epochs=2"),
    "trainer.batch_size": Range(1, fix="use a batch size >= 1, e.g. trainer.batch_size=128"),
    "trainer.eval_batch_size": Range(1, fix="use an evaluation batch size >= 1, e.g. trainer.eval_batch_size=1000"),
    "trainer.eval_every": Range(1, fix="evaluate every N >= 1 epochs, e.g. trainer.eval_every=1 (the last epoch always)"),
    "trainer.threads": Range(0, fix="use N >= 0 CPU threads (0 = torch's default)"),
    "trainer.checkpoint_every": Range(0, fix="checkpoint every N >= 0 epochs (0 = never; resume needs checkpoints)"),
}

#: numeric keys whose range involves other keys, checked by explicit rules in validate():
#: sparsity in [0, 1); 0 <= schedule.start <= schedule.end <= 1;
#: 0 <= schedule.initial_sparsity <= sparsity
RANGES_CHECKED_ELSEWHERE = ("sparsity", "schedule.start", "schedule.end", "schedule.initial_sparsity")


def _plug_in_method_ranges() -> None:
    """The ranges a method module states for its own knobs join RANGES (checked when it is chosen)."""
    from repro.pruning.methods import REGISTRY

    for cls in REGISTRY.values():
        for key, rng in cls.ranges.items():
            RANGES.setdefault(key, rng)


_plug_in_methods()
_plug_in_method_ranges()


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _lookup(cfg: Any, key: str) -> Any:
    """``cfg.a.b`` for key "a.b", or None where a part is absent (a pruner without that knob)."""
    node = cfg
    for part in key.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_ranges(cfg: Any) -> None:
    """Every key of RANGES that the config has lies in its range. Raises ConfigError."""
    for key, rng in RANGES.items():
        value = _lookup(cfg, key)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        finite = "" if math.isfinite(value) else "not a finite number; "
        _require(rng.holds(float(value)), f"{key}={_fmt(value)}: {finite}{rng.fix}")


def validate(cfg: Any) -> None:
    """Cross-field checks and ranges that types cannot express. Raises ConfigError (one line)."""
    s = cfg.sparsity
    _require(math.isfinite(s) and 0.0 <= s < 1.0, f"sparsity={s} is impossible: use a fraction in [0, 1), e.g. sparsity=0.9")
    check_ranges(cfg)
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
    _require(cfg.pruner.scope in SCOPES, f"pruner.scope={cfg.pruner.scope}: use {', '.join(SCOPES)}")
    o = cfg.optim
    _require(o.name in ("sgd", "adam", "adamw"), f"optim.name={o.name}: use sgd, adam or adamw")
    _require(o.lr_schedule in ("multistep", "cosine", "constant"),
             f"optim.lr_schedule={o.lr_schedule}: use multistep, cosine or constant")
    _require(all(0.0 < m <= 1.0 for m in o.milestones),
             f"optim.milestones={list(o.milestones)}: give fractions of the run in (0, 1]")
    # a warmup as long as the run is allowed (LTH's ResNet warms up over 2/3 of training); longer is a typo
    _require(o.warmup_epochs <= t.epochs,
             f"optim.warmup_epochs={o.warmup_epochs}: warm up for at most trainer.epochs={t.epochs} epochs")
    sch = cfg.schedule
    _require(sch.name in ("linear", "cubic", "exponential", "constant"),
             f"schedule.name={sch.name}: use linear, cubic, exponential or constant")
    _require(0.0 <= sch.start <= sch.end, f"schedule window start={sch.start} end={sch.end}: need 0 <= start <= end")
    _require(sch.end <= 1.0, f"schedule.end={sch.end} lies past the end of training: use a fraction of the run <= 1.0")
    _require(sch.initial_sparsity >= 0.0,
             f"schedule.initial_sparsity={sch.initial_sparsity}: start from a sparsity >= 0, e.g. 0.0")
    _require(sch.initial_sparsity <= s,
             f"schedule.initial_sparsity={sch.initial_sparsity} exceeds sparsity={s}: lower it")
    _require(sch.update_unit in ("iterations", "epochs"), f"schedule.update_unit={sch.update_unit}: use iterations or epochs")
    from repro.pruning.methods import REGISTRY

    method = REGISTRY.get(cfg.pruner.name)
    if method is not None:
        method.check(cfg)  # the method's own cross-field rules
    targets = list(getattr(cfg.pruner, "targets", []) or [])
    for target in targets:
        _require(0.0 < target < 1.0, f"pruner.targets contains {target}: every target must lie in (0, 1)")
    layer_rates = getattr(cfg.pruner, "layer_rates", None) or {}
    _require(isinstance(layer_rates, dict | DictConfig),
             f"pruner.layer_rates={layer_rates}: give a mapping of layer name to rate, e.g. pruner.layer_rates={{fc3:0.1}}")
    for layer, rate in dict(layer_rates).items():
        _require(isinstance(rate, int | float) and not isinstance(rate, bool) and 0.0 < rate < 1.0,
                 f"pruner.layer_rates.{layer}={rate}: remove a fraction in (0, 1) of that layer per round")
