"""What the benchmark measures and the bar it holds each number to: the schema version, the
targets, the training specs (full and ``--quick``), the epoch-time spec and its variants, and the
settings every part reads. Kept apart so that a reader finds every number that decides a verdict
in one place, and so that the GPU check can build specs and settings without running anything."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA = 1

#: the bar each ratio must clear (CPU targets)
TARGETS = {
    "pmp/dense": 0.97,
    "dense/bare": 0.95,
    "pmp/hooks": 1.0,
    "pmp/hooks (lenet300, batch <= 128)": 1.10,
    "selection seconds (20M weights)": 1.0,
    "selection extra memory / weights": 4.0,
    "loader ours/torchvision": 5.0,
    "resnet18 cifar10 epoch seconds (cuda, batch 128, with data)": 3.0,
}


@dataclass(frozen=True)
class TrainSpec:
    """One training-throughput comparison: a model on a dataset at a batch size, ``steps`` per measurement."""

    key: str
    model: str
    dataset: str
    batch: int
    steps: int
    width: float = 1.0


# Short windows, many rounds: on a shared VM the noise comes in bursts and slow drifts, so
# pairing measurements a fraction of a second apart and taking the median over 11 rounds is
# steadier than 5 rounds of several seconds (steps stay multiples of update_frequency).
FULL_SPECS = (
    TrainSpec("lenet300-b60", "lenet300", "mnist", 60, 300),
    TrainSpec("lenet300-b128", "lenet300", "mnist", 128, 150),
    TrainSpec("lenet5-b128", "lenet5", "mnist", 128, 50),
    TrainSpec("vgg19w0.125-b128", "vgg19", "cifar10", 128, 50, 0.125),
)
QUICK_SPECS = (
    TrainSpec("lenet300-b60", "lenet300", "mnist", 60, 200),
    TrainSpec("lenet300-b128", "lenet300", "mnist", 128, 100),
    TrainSpec("lenet5-b128", "lenet5", "mnist", 128, 50),
    TrainSpec("vgg19w0.125-b128", "vgg19", "cifar10", 128, 50, 0.125),
)
SELECTION_MODELS = ("resnet18", "vgg19")
#: the GPU epoch-time spec: 100 of the 391 batches of a CIFAR-10 epoch per measurement
EPOCH_SPEC = TrainSpec("resnet18-b128", "resnet18", "cifar10", 128, 100)
CIFAR10_TRAIN_IMAGES = 50_000


@dataclass(frozen=True)
class Variant:
    """How the loop runs in an epoch-time measurement: what ``repro-train`` sets through
    ``trainer.precision``, ``trainer.channels_last`` and ``trainer.compile``."""

    precision: str = "bf16"
    channels_last: bool = True
    compile: bool = False

    @property
    def key(self) -> str:
        return "-".join([self.precision] + ["cl"] * self.channels_last + ["compile"] * self.compile)

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``bf16-cl-compile`` -> Variant("bf16", True, True); ``fp32`` -> Variant("fp32", False, False)."""
        precision, *flags = text.strip().split("-")
        if precision not in ("fp32", "bf16") or set(flags) - {"cl", "compile"}:
            raise ValueError(f"variant '{text}': PRECISION[-cl][-compile] with PRECISION fp32 or bf16")
        return cls(precision, "cl" in flags, "compile" in flags)


@dataclass
class Settings:
    device: str = "cpu"
    repeats: int = 11
    warmup: int = 1
    precision: str = "fp32"
    #: PMP mask recomputation period (iterations), suite and peer alike
    update_frequency: int = 50
    #: sparsity reached at the last measured step (linear from 0 over the whole benchmark)
    final_sparsity: float = 0.9
    lr: float = 0.01
    selection_repeats: int = 5
    loader_batch: int = 128
    loader_batches: int = 60
    loader_workers: tuple[int, ...] = (0, 2)
    #: the suite's loop only (the peers ignore them): memory format, torch.compile, augmentation
    channels_last: bool = False
    compile: bool = False
    augment: bool = False
