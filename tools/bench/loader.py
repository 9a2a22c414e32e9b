"""Part 5 of the benchmark: batches/s of :class:`repro.data.Batches` (augmenting uint8 tensors on
the device) against torchvision's DataLoader with the standard transforms over the same images as
in-memory PIL images. Apart because it alone needs torchvision's transforms and worker processes."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from typing import Any

import torch

from repro.data import SPECS, Batches, Normalizer, Split

from .specs import TARGETS, Settings
from .timing import interleave, paired, summary


class _PILImages(torch.utils.data.Dataset):
    def __init__(self, images: list, labels: list[int], transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def bench_loader(split: Split, settings: Settings) -> dict[str, Any]:
    """batches/s: repro's Batches (augment=True) vs torchvision's DataLoader + standard transforms."""
    import torchvision.transforms as T
    from torchvision.transforms.functional import to_pil_image

    device = torch.device(settings.device)
    batch, nb = settings.loader_batch, settings.loader_batches
    n = batch * nb
    if n > len(split):
        raise ValueError(f"the loader benchmark needs {n} images, the split has {len(split)}")
    images, labels = split.images[:n], split.labels[:n]
    ours = Batches(Split(images.to(device), labels.to(device)), batch, Normalizer("cifar10", device), augment=True)
    state = {"epoch": 0}

    def run_ours() -> int:
        count = 0
        for _x, _y in ours.epoch(0, state["epoch"]):
            count += 1
        state["epoch"] += 1
        return count

    mean, std = SPECS["cifar10"].mean, SPECS["cifar10"].std
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    pil = _PILImages([to_pil_image(img) for img in images], labels.tolist(), transform)
    loaders = {w: torch.utils.data.DataLoader(pil, batch_size=batch, shuffle=True, num_workers=w, persistent_workers=w > 0,
                                              pin_memory=device.type == "cuda")
               for w in settings.loader_workers}

    def tv(w: int) -> Callable[[], int]:
        def run() -> int:
            count = 0
            for x, y in loaders[w]:
                if device.type != "cpu":
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                count += 1
            return count

        return run

    contenders = {"ours": run_ours, **{f"torchvision-w{w}": tv(w) for w in settings.loader_workers}}
    runs = interleave(contenders, settings.repeats, settings.warmup, device)
    loaders.clear()  # persistent workers exit with their loaders
    gc.collect()
    rates = {name: r["rate"] for name, r in runs.items()}
    ratios = {f"ours/{k}": paired(rates["ours"], rates[k]) for k in rates if k != "ours"}
    best_peer = max((k for k in rates if k != "ours"), key=lambda k: statistics.median(rates[k]))
    check = {**ratios[f"ours/{best_peer}"], "peer": best_peer, "target": TARGETS["loader ours/torchvision"]}
    check["pass"] = check["median"] >= check["target"]
    return {
        "batch": batch, "batches_per_measurement": nb, "images": n, "device": device.type,
        "transforms": "RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(cifar10 mean, std)",
        "torchvision_source": "list of PIL images in memory, shuffle=True, persistent_workers when num_workers > 0",
        "contenders": {name: {"batches_per_s": summary(r["rate"]), "seconds": r["seconds"]} for name, r in runs.items()},
        "ratios": ratios,
        "check": check,
    }
