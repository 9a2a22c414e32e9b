"""The sizes of the two modes of the GPU check: ``GPU`` measures the real thing within a
15-minute lease, ``DRY`` runs the same code paths on a CPU in about a minute (``--dry``). One frozen
record per mode, so that every size a phase uses is read from one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Profile:
    """Sizes of one mode. The GPU profile measures the real thing; the dry profile runs the same
    code paths on a CPU in about a minute."""

    name: str
    device: str
    #: correctness checks: ResNet-18 width, batch, steps per epoch, test images, PMP update period
    check_width: float
    check_batch: int
    check_steps: int
    check_test: int
    check_update_every: int
    compile_backend: str
    count_models: tuple[str, ...]
    count_sparsities: tuple[float, ...]
    #: bench: the epoch spec (model, width, batch, steps per measurement) and its settings
    epoch_spec: tuple[str, str, str, int, int, float]
    variants: tuple[str, ...]
    late_variants: tuple[str, ...]
    bench_settings: dict[str, Any]
    selection_models: tuple[str, ...]
    selection_in_process: bool
    #: training through repro-train
    train_images: int
    test_images: int
    train_overrides: tuple[str, ...]
    max_epochs: int
    run_overhead_s: float
    fallback_epoch_s: float
    #: default caps and budget (seconds)
    budget: float
    caps: dict[str, float] = field(default_factory=dict)
    min_train: float = 120.0


GPU = Profile(
    name="gpu", device="cuda",
    check_width=1.0, check_batch=128, check_steps=20, check_test=1000, check_update_every=5, compile_backend="inductor",
    count_models=("resnet18", "vgg19"),
    count_sparsities=(0.5, 0.7, 0.729, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.9797, 0.98),
    epoch_spec=("resnet18-b128", "resnet18", "cifar10", 128, 100, 1.0),
    variants=("bf16-cl",), late_variants=("bf16-cl-compile",),
    bench_settings={"repeats": 3, "warmup": 1, "precision": "bf16", "selection_repeats": 3},
    selection_models=("resnet18", "vgg19"), selection_in_process=True,  # CUDA peak memory needs no fresh process
    train_images=50_000, test_images=10_000, train_overrides=("trainer.device=cuda",),
    max_epochs=160, run_overhead_s=25.0, fallback_epoch_s=10.0,
    budget=540.0, caps={"environment": 60.0, "data": 90.0, "checks": 150.0, "bench": 180.0}, min_train=120.0,
)
DRY = Profile(
    name="dry", device="cpu",
    check_width=0.0625, check_batch=32, check_steps=8, check_test=128, check_update_every=2, compile_backend="eager",
    count_models=("resnet18", "vgg19"), count_sparsities=(0.5, 0.729, 0.9797),
    epoch_spec=("resnet18w0.0625-b64", "resnet18", "cifar10", 64, 4, 0.0625),
    variants=("bf16-cl",), late_variants=(),
    bench_settings={"repeats": 2, "warmup": 1, "precision": "bf16", "update_frequency": 2, "selection_repeats": 1,
                    "loader_batch": 32, "loader_batches": 4, "loader_workers": (0,)},
    selection_models=("resnet18", "vgg19"), selection_in_process=True,
    train_images=512, test_images=256,
    train_overrides=("trainer.device=cpu", "model.width=0.0625", "data.train_subset=512", "data.test_subset=256",
                     "trainer.batch_size=64", "trainer.eval_batch_size=256", "trainer.threads=1",
                     "schedule.update_frequency=2"),
    # caps with room: the dry run takes ~50 s on an idle 2-core machine, but a loaded one (a sweep
    # beside it) hit the old 45 s checks cap; max_epochs bounds training whatever the budget
    max_epochs=2, run_overhead_s=10.0, fallback_epoch_s=2.0,
    budget=420.0, caps={"environment": 60.0, "data": 60.0, "checks": 150.0, "bench": 120.0}, min_train=30.0,
)
SKIPPED_IN_DRY = {"bf16-cl-compile": "dry mode: inductor builds C++ kernels on the CPU, minutes on 2 cores; the "
                                     "compile path is checked with the eager backend in the correctness checks"}
