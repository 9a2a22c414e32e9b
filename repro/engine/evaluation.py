"""Evaluation: loss and accuracy over a split, epoch means, and the rule for the headline numbers."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from repro.data import Normalizer, Split, eval_batches
from repro.records import (
    BEST_EPOCH,
    BEST_ON_VAL,
    BEST_TEST_ACC,
    CYCLE,
    EPOCH,
    FINAL_TEST_ACC,
    FINAL_TEST_LOSS,
    MASK_FINAL,
    MAX_TEST_ACC,
    TEST_ACC,
    TEST_LOSS,
    VAL_ACC,
)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, normalize: Normalizer, batch_size: int,
             prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (percent, the unit of every accuracy the suite records) over a
    split, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=split.images.device)
    correct = torch.zeros((), device=split.images.device, dtype=torch.long)
    for x, y in eval_batches(split, batch_size, normalize):
        out = model(prepare(x)).float()
        loss_sum += F.cross_entropy(out, y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
    model.train(was_training)
    n = len(split)
    return loss_sum.item() / n, 100.0 * correct.item() / n


def epoch_means(losses: list[torch.Tensor], preds: list[torch.Tensor], labels: list[torch.Tensor]) -> tuple[float, float, int]:
    """Sample-weighted mean loss and accuracy (percent) over the steps so far (batch means weighted
    by size), and the number of samples."""
    sizes = [len(y) for y in labels]
    seen = sum(sizes)
    weights = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
    loss_sum = (torch.stack(losses).float() * weights).sum()
    correct = (torch.cat(preds) == torch.cat(labels)).sum()
    return loss_sum.item() / seen, 100.0 * correct.item() / seen, seen


def headline(history: list[dict], cycle: int) -> dict[str, float]:
    """Final and best accuracy of cycle ``cycle`` from the per-epoch history.

    The final numbers are those of the last evaluated epoch. best_test_acc counts only
    epochs evaluated on the final mask of that cycle (a PMP run's early, denser epochs do
    not count); with a validation split it is the test accuracy at the best validation
    epoch among those, else the best test epoch (test-selected, as many papers report);
    best_on_val says which, so that the report can flag a number chosen on the test set.
    max_test_acc is the best test epoch among the same epochs whatever the run's splits: the
    "max over kept checkpoints" that SNIP reports, test-selected by construction.
    """
    evaluated = [h for h in history if h.get(CYCLE) == cycle and TEST_ACC in h]
    final = [h for h in evaluated if h[MASK_FINAL] == 1.0]
    out = {FINAL_TEST_ACC: evaluated[-1][TEST_ACC], FINAL_TEST_LOSS: evaluated[-1][TEST_LOSS]}
    if final:
        key = VAL_ACC if VAL_ACC in final[0] else TEST_ACC
        best = max(final, key=lambda h: h[key])
        out[BEST_TEST_ACC] = best[TEST_ACC]
        out[BEST_EPOCH] = float(best[EPOCH])
        out[BEST_ON_VAL] = float(key == VAL_ACC)
        out[MAX_TEST_ACC] = max(h[TEST_ACC] for h in final)
    return out
