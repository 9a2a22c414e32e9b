"""Which network a bare state dict belongs to: name, width, input channels and classes.

A checkpoint file (``checkpoints/<identity>.pt``) holds weights but not the config, so the
export reads the architecture off the tensor shapes: every candidate is built on the ``meta``
device (no memory, no init cost) and kept only if its state-dict names and shapes match the
file's exactly. A run's ``config.yaml`` (or ``--model``/``--width``) gives hints that are tried
first; a hint that does not match is an error, not a silent guess.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass

import torch

from repro import models

MASK_SUFFIX = "_mask"
#: the side of the square input images each family was built for (LeNets: MNIST-like 28x28)
INPUT_SIZE = {"lenet300": 28, "lenet5": 28}
DEFAULT_INPUT_SIZE = 32


class SpecError(ValueError):
    """No model of the registry matches a state dict (the message says what to pass)."""


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`repro.models.build` needs to make the network again."""

    name: str
    width: float
    in_channels: int
    num_classes: int

    def build(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        with torch.device(device):
            return models.build(self.name, num_classes=self.num_classes, in_channels=self.in_channels,
                                width=self.width)

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        size = INPUT_SIZE.get(self.name, DEFAULT_INPUT_SIZE)
        return (batch, self.in_channels, size, size)

    def as_dict(self) -> dict:
        return asdict(self)


def without_masks(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith(MASK_SUFFIX)}


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in without_masks(state).items()}


def _weights(state: Mapping[str, torch.Tensor]) -> list[tuple[int, ...]]:
    """Shapes of the Conv2d/Linear weights in module order (the state dict's order)."""
    return [tuple(v.shape) for k, v in without_masks(state).items() if k.endswith(".weight") and v.dim() in (2, 4)]


def _candidates(name: str, weights: list[tuple[int, ...]], width: float | None) -> Iterator[ModelSpec]:
    """Specs of model ``name`` that could give these weight shapes: in_channels and classes from
    the first and last layers, width from the channel counts (first layer, widest layer)."""
    base = _weights(ModelSpec(name, 1.0, 1, 10).build("meta").state_dict())
    if len(base) != len(weights) or weights[0][1] % base[0][1]:
        return
    in_channels, num_classes = weights[0][1] // base[0][1], weights[-1][0]
    widths = [width] if width is not None else []
    widths += [weights[0][0] / base[0][0], max(w[0] for w in weights[:-1] or weights) / max(b[0] for b in base[:-1] or base), 1.0]
    for w in dict.fromkeys(widths):
        yield ModelSpec(name, float(w), in_channels, num_classes)


def infer_spec(state: Mapping[str, torch.Tensor], name: str | None = None, width: float | None = None) -> ModelSpec:
    """The registry model whose state-dict names and shapes equal ``state``'s (masks aside)."""
    want, weights = _shapes(state), _weights(state)
    if not weights:
        raise SpecError("the state dict holds no Conv2d/Linear weights: not a model of this suite")
    names = [name] if name else sorted(models.REGISTRY)
    for candidate in names:
        if candidate not in models.REGISTRY:
            raise SpecError(f"unknown model '{candidate}': choose one of {', '.join(sorted(models.REGISTRY))}")
        for spec in _candidates(candidate, weights, width):
            if _shapes(spec.build("meta").state_dict()) == want:
                return spec
    hint = f" as {name}" + (f" at width {width:g}" if width is not None else "") if name else ""
    raise SpecError(f"no model of the registry matches the weights{hint}: pass --model NAME and --width W "
                    "as the run was trained (model.name, model.width)")
