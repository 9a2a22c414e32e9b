"""FLOP accounting against hand-computed values."""

import pytest
import torch.nn as nn

from repro import models
from repro.cost import forward_flops, layer_macs, training_flops


def test_lenet300_macs_and_flops_by_hand():
    macs = layer_macs(models.build("lenet300"), (1, 28, 28))
    assert macs == {"fc1": 784 * 300, "fc2": 300 * 100, "fc3": 100 * 10}
    assert forward_flops(macs) == 2 * 266_200
    sparse = forward_flops(macs, {"fc1": 0.1, "fc2": 0.5, "fc3": 1.0})
    assert sparse == pytest.approx(2 * (784 * 300 * 0.1 + 300 * 100 * 0.5 + 1000))


def test_small_conv_net_by_hand():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Flatten(),
                        nn.Linear(6 * 3 * 3, 10))
    macs = layer_macs(net, (1, 8, 8))
    # conv 1: 8x8 -> 6x6, 4*1*3*3 weights per output pixel; conv 2: 6x6 -> 3x3, 6*4*3*3
    assert macs == {"0": 4 * 9 * 36, "2": 6 * 4 * 9 * 9, "4": 54 * 10}
    assert forward_flops(macs, {"0": 0.5, "2": 0.25}) == pytest.approx(2 * (1296 * 0.5 + 1944 * 0.25 + 540))


def test_training_flops_follow_the_density_at_each_step():
    macs = {"a": 100, "b": 50}
    dense_step = 3 * 2 * 150 * 8  # batch 8
    log = [(4, [0.5, 1.0]), (7, [0.1, 0.2])]
    got = training_flops(macs, 8, 10, log, ["a", "b"], scoring_samples=16)
    expected = 4 * dense_step + 3 * (3 * 2 * (50 + 50) * 8) + 3 * (3 * 2 * (10 + 10) * 8) + 3 * 2 * 150 * 16
    assert got == pytest.approx(expected)
