"""The run's final network as an MLflow model: ``mlflow.pytorch.load_model("runs:/<id>/model")``.

The trained model carries its masks as ``weight_mask`` buffers (see :mod:`repro.pruning.masks`),
which a freshly built network of the same family does not have; such a state dict loads neither
strictly into a new model nor as a plain network anywhere else. The logged model is therefore a
fresh instance of the family with the masks folded into the weights (``w * m``, so pruned
weights are exactly 0.0) and loaded strictly: if a key were missing or left over, logging fails
instead of publishing a model that differs from the run. The masks themselves stay available as
the run's ``final_state_dict.pt`` (``pruner=mask_from``, ``repro-export``).

The model is pickled by MLflow's PyTorch flavour, so loading it needs this package importable
(an install of repro, or the checkout on ``PYTHONPATH``). Its input example is a batch of
normalised test images, its signature inferred from them and the logits.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from repro import models
from repro.data import Dataset, Normalizer, eval_batches

#: the artifact path of the logged model (runs:/<id>/model)
MODEL_NAME = "model"
#: images in the input example (and in the signature's inference)
EXAMPLE_SIZE = 2


def folded_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with every ``<prefix>weight_mask`` multiplied into ``<prefix>weight`` and dropped."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for key in [k for k in state if k.endswith("weight_mask")]:
        mask = state.pop(key)
        weight = key[: -len("_mask")]
        state[weight] = state[weight] * mask.to(state[weight].dtype)
    return state


def plain_model(model: nn.Module, name: str, num_classes: int, in_channels: int, width: float) -> nn.Module:
    """A fresh CPU instance of the family, in eval mode, holding ``model``'s weights with the masks folded in."""
    fresh = models.build(name, num_classes=num_classes, in_channels=in_channels, width=width)
    fresh.load_state_dict({k: v.cpu() for k, v in folded_state_dict(model).items()}, strict=True)
    return fresh.float().eval()


def input_example(dataset: Dataset) -> Any:
    """A few normalised test images as a float32 numpy array, the shape the model takes."""
    normalize = Normalizer(dataset.name, torch.device("cpu"))
    x, _ = next(iter(eval_batches(dataset.test, EXAMPLE_SIZE, normalize)))
    return x[:EXAMPLE_SIZE].float().cpu().numpy()


def log_model(uri: str, run_id: str, model: nn.Module, cfg: Any, dataset: Dataset) -> None:
    """Log the folded network under ``runs:/<run_id>/model`` with signature and input example."""
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    net = plain_model(model, cfg.model.name, dataset.num_classes, dataset.in_channels, cfg.model.width)
    example = input_example(dataset)
    with torch.no_grad():
        logits = net(torch.from_numpy(example)).numpy()
    mlflow.set_tracking_uri(uri)
    # the logged model belongs to the run's experiment (MLflow takes the active one, else "Default")
    mlflow.set_experiment(experiment_id=mlflow.MlflowClient(uri).get_run(run_id).info.experiment_id)
    mlflow.pytorch.log_model(
        net, name=MODEL_NAME, run_id=run_id, signature=infer_signature(example, logits), input_example=example,
        # named, not inferred: inference loads the model in a subprocess to see what it imports
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
