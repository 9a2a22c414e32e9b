"""Offline loaders on the real files, and batch augmentation that is per-sample and exact."""

import pytest
import torch

from repro import data
from tests.conftest import SHARED_DATA, needs_cifar, needs_mnist


@needs_mnist
def test_mnist_from_the_offline_mirror():
    ds = data.load("mnist", SHARED_DATA, download=False)
    assert ds.source == "official"
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.train.images.dtype == torch.uint8
    assert ds.test.images.shape == (10000, 1, 28, 28)
    assert ds.train.labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert ds.test.labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_mnist
def test_validation_split_is_carved_from_training_data_and_fixed():
    a = data.load("mnist", SHARED_DATA, val_size=5000, download=False)
    b = data.load("mnist", SHARED_DATA, val_size=5000, download=False)
    assert len(a.train) == 55000 and len(a.val) == 5000
    assert torch.equal(a.val.labels, b.val.labels)


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian(tmp_path):
    ds = data.load("fashion_mnist", tmp_path, download=False)
    assert ds.source == "debian" and ds.train.images.shape == (60000, 1, 28, 28)
    assert data.locate("fashion_mnist", tmp_path) == "debian"


def test_missing_data_is_one_clear_error(tmp_path):
    with pytest.raises(data.DataError, match="REPRO_DATA_DIR") as info:
        data.load("mnist", tmp_path, download=False)
    assert "\n" not in str(info.value)
    assert data.locate("cifar10", tmp_path) == "missing"


@needs_cifar
def test_cifar_jpeg_copy_is_found_and_tagged(tmp_path):
    assert data.locate("cifar10", SHARED_DATA) == "jpeg"


def test_crops_differ_per_sample_and_match_a_padded_slice():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    dy = torch.tensor([0, 8, 4, 1, 7, 3])
    dx = torch.tensor([8, 0, 4, 2, 5, 6])
    no_flip = torch.zeros(6, dtype=torch.bool)
    out = data.random_crop_flip(images, dy, dx, no_flip)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(6):
        assert torch.equal(out[i], padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32])
    assert not torch.equal(out[0], out[1])


def test_flip_is_a_horizontal_flip_of_the_crop():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    dy, dx = torch.tensor([4, 2, 6, 0]), torch.tensor([4, 1, 3, 8])
    plain = data.random_crop_flip(images, dy, dx, torch.zeros(4, dtype=torch.bool))
    flipped = data.random_crop_flip(images, dy, dx, torch.ones(4, dtype=torch.bool))
    assert torch.equal(flipped, plain.flip(3))
    centre = data.random_crop_flip(images, torch.full((4,), 4), torch.full((4,), 4), torch.zeros(4, dtype=torch.bool))
    assert torch.equal(centre, images)


def test_epochs_are_shuffled_augmented_per_sample_and_replayable():
    split = data.Split(torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8), torch.arange(100))
    norm = data.Normalizer("cifar10", torch.device("cpu"))
    batches = data.Batches(split, 32, norm, augment=True)
    assert len(batches) == 4
    e0 = list(batches.epoch(seed=0, epoch=0))
    again = list(batches.epoch(seed=0, epoch=0))
    e1 = list(batches.epoch(seed=0, epoch=1))
    assert sum(len(y) for _, y in e0) == 100
    assert sorted(torch.cat([y for _, y in e0]).tolist()) == list(range(100))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(e0, again))
    assert not torch.equal(e0[0][1], e1[0][1])
    # resuming mid-epoch replays the same batches
    tail = list(batches.epoch(seed=0, epoch=0, start=2))
    assert torch.equal(tail[0][0], e0[2][0])


def test_normalisation_uses_the_dataset_statistics():
    norm = data.Normalizer("mnist", torch.device("cpu"))
    x = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    assert torch.allclose(norm(x), torch.full((1, 1, 2, 2), (1 - 0.1307) / 0.3081))
