"""LeNets for 28x28 grayscale images (MNIST, Fashion-MNIST)."""

from __future__ import annotations

import torch
import torch.nn as nn


class LeNet300(nn.Module):
    """LeNet-300-100 (LeCun et al. 1998), the LTH and SNIP MNIST MLP: 784-300-100-10.

    266,610 parameters (all in three Linear layers).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        del width  # the LeNets keep their published sizes
        self.fc1 = nn.Linear(28 * 28 * in_channels, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5Caffe(nn.Module):
    """LeNet-5-Caffe as used by SNIP (Lee et al. 2019): conv20-conv50-fc500-fc10.

    5x5 valid convolutions, 2x2 max-pools, 431,080 parameters.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        del width
        self.conv1 = nn.Conv2d(in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)
