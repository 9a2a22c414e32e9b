"""The dataset registry: each dataset is one spec, and CIFAR-100 (torchvision's cifar-100-python
layout) is read from a small file in that format made here, then trained on end to end."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from repro import data, models
from tests.conftest import runs_of


def write_cifar100(root, n_train: int = 30, n_test: int = 10) -> tuple[np.ndarray, list[int]]:
    """torchvision's layout: <root>/cifar-100-python/{train,test,meta}, pickles of b'data' (N x 3072
    uint8, the R, G, B planes of each 32x32 image) and b'fine_labels'."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = None
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(7 * i) % 100 for i in range(n)]
        with open(folder / split, "wb") as f:
            pickle.dump({b"data": images, b"fine_labels": labels, b"coarse_labels": [0] * n}, f)
        out = out or (images, labels)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f)
    return out


def test_every_spec_states_what_the_suite_needs():
    assert {"mnist", "fashion_mnist", "cifar10", "cifar100"} <= set(data.SPECS)
    spec = data.SPECS["cifar100"]
    assert (spec.num_classes, spec.channels, spec.size, spec.augment) == (100, 3, 32, True)
    assert (data.SPECS["fashion_mnist"].num_classes, data.SPECS["fashion_mnist"].augment) == (10, False)
    for s in data.SPECS.values():
        assert len(s.mean) == len(s.std) == s.channels


def test_a_taken_dataset_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        data.register_dataset(data.SPECS["mnist"])


def test_cifar100_is_read_from_the_python_pickles(tmp_path):
    images, labels = write_cifar100(tmp_path)
    assert data.locate("cifar100", tmp_path) == "official"
    ds = data.load("cifar100", tmp_path, download=False)
    assert ds.source == "official" and ds.num_classes == 100 and ds.in_channels == 3
    assert tuple(ds.train.images.shape) == (30, 3, 32, 32) and tuple(ds.test.images.shape) == (10, 3, 32, 32)
    # pixel (channel 1, row 2, column 3) of image 4 sits at 1*1024 + 2*32 + 3 of its row
    assert int(ds.train.images[4, 1, 2, 3]) == int(images[4, 1024 + 64 + 3])
    assert ds.train.labels.tolist() == labels
    norm = data.Normalizer("cifar100", torch.device("cpu"))
    x = norm(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8))
    assert x.view(-1).tolist() == pytest.approx([(1 - 0.5071) / 0.2673, (1 - 0.4865) / 0.2564, (1 - 0.4409) / 0.2762],
                                                rel=1e-5)


def test_a_missing_cifar100_is_one_clear_error(tmp_path):
    assert data.locate("cifar100", tmp_path) == "missing"
    with pytest.raises(data.DataError, match="cifar-100-python"):
        data.load("cifar100", tmp_path, download=False)


def test_a_run_trains_on_cifar100_with_100_outputs(tmp_path, train_run):
    write_cifar100(tmp_path / "data")
    out = train_run("data=cifar100", f"data.root={tmp_path / 'data'}", "data.download=false", "model=resnet20",
                    "model.width=0.25", "trainer.epochs=1", "trainer.batch_size=10", "trainer.threads=1",
                    "pruner=random", "sparsity=0.5")
    assert out.code == 0
    (run,) = runs_of(train_run.uri)
    assert run.info.status == "FINISHED" and run.data.tags["dataset"] == "cifar100"
    def prunable(classes: int) -> int:
        net = models.build("resnet20", num_classes=classes, in_channels=3, width=0.25)
        return sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))

    assert run.data.metrics["num_prunable"] == prunable(100) != prunable(10)
