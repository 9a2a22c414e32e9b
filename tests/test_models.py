import pytest
import torch
import torch.nn as nn

from repro import models

# Pinned parameter counts at width 1 (total, prunable conv/linear weights).
COUNTS = {
    "lenet300": (266_610, 266_200),
    "lenet5": (431_080, 430_500),
    "vgg_like": (14_987_722, 14_977_728),
    "vgg19": (20_035_018, 20_024_000),
    "resnet18": (11_173_962, 11_164_352),
    "resnet20": (272_474, 270_896),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts_and_output_shape(name):
    in_channels, size = (1, 28) if name.startswith("lenet") else (3, 32)
    model = models.build(name, in_channels=in_channels)
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert (total, prunable) == COUNTS[name]
    model.eval()
    assert model(torch.zeros(2, in_channels, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", ["vgg_like", "vgg19", "resnet18", "resnet20"])
def test_width_multiplier_shrinks_cnns(name):
    small = models.build(name, in_channels=3, width=0.25)
    full = sum(p.numel() for p in models.build(name, in_channels=3).parameters())
    assert sum(p.numel() for p in small.parameters()) < full / 8
    small.eval()
    assert small(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="lenet300"):
        models.build("alexnet")
