"""The one training loop and what it needs, one job per module.

- :mod:`~repro.engine.loop`: the loop (epochs, steps, the method's hooks, cycles) and the cost of a run
- :mod:`~repro.engine.evaluation`: loss and accuracy over a split; the final/best-epoch rule
- :mod:`~repro.engine.lr`: the learning rate as a pure function of the step
- :mod:`~repro.engine.checkpoint`: atomic checkpoints and what a resume restores
- :mod:`~repro.engine.placement`: the device and the weight initialisation
"""

from repro.engine.checkpoint import save_atomic
from repro.engine.evaluation import evaluate, headline
from repro.engine.loop import Engine, LoopConfig, LoopState, NonFiniteLoss
from repro.engine.lr import lr_factor
from repro.engine.placement import initialize, resolve_device

__all__ = ["Engine", "LoopConfig", "LoopState", "NonFiniteLoss", "evaluate", "headline", "initialize", "lr_factor",
           "resolve_device", "save_atomic"]
