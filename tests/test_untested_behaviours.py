"""Behaviours no test pinned before: a mask taken from an earlier run by its id, the best epoch
chosen on the validation split, ``trainer.eval_every``, PMP's ``schedule.update_unit=epochs``,
``GradualMagnitude.plan`` on its own, Ctrl-C ending a run KILLED, and CIFAR augmentation
reaching the training loop.

All in-process and small (MNIST subsets of a few dozen images, a handful of CIFAR JPEGs).
Expected values are written out by hand (with the arithmetic in a comment) or come from an
independent computation; none is produced by the function under test. Each test is the
killer of a named mutant in ``tools/mutants.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from repro import records as rec
from repro.data import Batches, Dataset, Split
from repro.engine.evaluation import headline
from repro.pruning.methods import GradualMagnitude
from tests.conftest import SHARED_DATA, needs_cifar, needs_mnist, runs_of

#: a run small enough for a test: LeNet-300-100 on 32 MNIST images, 2 steps an epoch
TINY = ("data.train_subset=32", "data.test_subset=50", "trainer.batch_size=16", "trainer.eval_batch_size=50",
        "trainer.threads=1")
#: prunable weights of LeNet-300-100: 784*300 + 300*100 + 100*10
LENET300_N = 266_200


def artifact_state(uri: str, run_id: str, dst: Path) -> dict[str, torch.Tensor]:
    """A run's final_state_dict.pt artifact, read straight from the store."""
    path = MlflowClient(uri).download_artifacts(run_id, rec.FINAL_STATE_ARTIFACT, str(dst))
    return torch.load(path, map_location="cpu")


# ----------------------------------------------------------------------------- pruner.source=<run id>


@needs_mnist
def test_mask_from_a_run_id_retrains_exactly_that_runs_final_mask(train_run, tmp_path):
    """``pruner=mask_from pruner.source=<run id>`` fetches that run's final_state_dict.pt and takes
    its masks, and only its masks: the weights start from this run's own initialisation."""
    train_run("pruner=magnitude_init", "sparsity=0.7", "trainer.epochs=1", *TINY)
    (donor,) = runs_of(train_run.uri)
    donor_id = donor.info.run_id
    out = train_run("pruner=mask_from", f"pruner.source={donor_id}", "seed=1", "trainer.epochs=1", *TINY)
    assert out.code == 0
    (child,) = [r for r in runs_of(train_run.uri) if r.info.run_id != donor_id]
    assert child.info.status == "FINISHED"

    donor_state = artifact_state(train_run.uri, donor_id, tmp_path / "donor")
    child_state = artifact_state(train_run.uri, child.info.run_id, tmp_path / "child")
    names = ["fc1", "fc2", "fc3"]
    for name in names:
        mask = donor_state[f"{name}.weight_mask"]
        assert torch.equal(child_state[f"{name}.weight_mask"], mask), name
        assert bool((child_state[f"{name}.weight"][mask == 0] == 0).all()), name
    # 0.7 of 266,200 = 186,340 zeros (exact), carried over whole
    assert sum(int((donor_state[f"{n}.weight_mask"] == 0).sum()) for n in names) == 186_340
    assert child.data.metrics[rec.FINAL_SPARSITY] == pytest.approx(0.7, abs=1e-12)
    # the weights are not the donor's: seed 1 initialised and trained them
    kept = donor_state["fc1.weight_mask"] != 0
    assert not torch.equal(child_state["fc1.weight"][kept], donor_state["fc1.weight"][kept])


@needs_mnist
def test_mask_from_an_unknown_run_id_fails_the_run_with_a_one_line_reason(train_run):
    out = train_run("pruner=mask_from", "pruner.source=0123456789abcdef0123456789abcdef", "trainer.epochs=1", *TINY,
                    check=False)
    assert out.code == 2
    assert "pruner.source=0123456789abcdef0123456789abcdef: neither a file nor a run" in out.stderr
    (run,) = runs_of(train_run.uri)
    assert run.info.status == "FAILED"


# ----------------------------------------------------------------------------- best epoch on the validation split


def scripted_evaluate(test_accs: list[float], val_accs: list[float], val_size: int, test_size: int):
    """A stand-in for ``evaluate`` that hands out scripted accuracies, one per call and split
    (told apart by their sizes), so the best epoch is known before the run."""
    calls = {"test": 0, "val": 0}

    def fake(model, split, normalize, batch_size, prepare=lambda x: x):
        kind = {val_size: "val", test_size: "test"}[len(split)]
        i = calls[kind]
        calls[kind] += 1
        acc = (val_accs if kind == "val" else test_accs)[i]
        return 1.0 - acc / 100.0, acc

    fake.calls = calls
    return fake


@needs_mnist
@pytest.mark.parametrize(("val_size", "best_epoch", "best_test_acc"), [
    (20, 2.0, 50.0),  # validation accuracies 40, 80, 70 %: epoch 2 is best; its test accuracy is 50 %
    (0, 1.0, 90.0),  # no validation split: the best test epoch (test accuracies 90, 50, 60 %)
])
def test_best_epoch_follows_the_validation_accuracy_when_there_is_a_validation_split(
        train_run, monkeypatch, val_size, best_epoch, best_test_acc):
    from repro.engine import loop

    fake = scripted_evaluate([90.0, 50.0, 60.0], [40.0, 80.0, 70.0], val_size=20, test_size=50)
    monkeypatch.setattr(loop, "evaluate", fake)
    out = train_run(f"data.val_size={val_size}", *TINY, "trainer.epochs=3", uri=None)
    final = out.value
    assert fake.calls == {"test": 3, "val": 3 if val_size else 0}
    assert final[rec.BEST_EPOCH] == best_epoch
    assert final[rec.BEST_TEST_ACC] == best_test_acc
    assert final[rec.BEST_ON_VAL] == (1.0 if val_size else 0.0)  # how the epoch was chosen, for the report
    assert final[rec.MAX_TEST_ACC] == 90.0  # the highest test accuracy, whatever the selection
    assert final[rec.FINAL_TEST_ACC] == 60.0  # the last epoch, whatever the selection


def test_headline_picks_the_best_validation_epoch_among_final_mask_epochs_only():
    """By hand: epoch 1 (denser mask) has the best validation accuracy but does not count; of
    epochs 2-4, epoch 3 has the best validation accuracy (0.7) and its test accuracy is 0.55,
    though epoch 4 has the best test accuracy (0.8)."""
    def h(epoch, final, test, val):
        return {rec.EPOCH: epoch, rec.CYCLE: 0, rec.MASK_FINAL: final, rec.TEST_ACC: test, rec.TEST_LOSS: 1 - test,
                rec.VAL_ACC: val}

    history = [h(1, 0.0, 0.9, 0.95), h(2, 1.0, 0.6, 0.5), h(3, 1.0, 0.55, 0.7), h(4, 1.0, 0.8, 0.6)]
    out = headline(history, 0)
    assert out[rec.BEST_EPOCH] == 3.0 and out[rec.BEST_TEST_ACC] == 0.55
    assert out[rec.FINAL_TEST_ACC] == 0.8


# ----------------------------------------------------------------------------- trainer.eval_every


@needs_mnist
def test_eval_every_evaluates_every_nth_epoch_and_always_the_last(train_run):
    """5 epochs with eval_every=2: test metrics at epochs 2 and 4, and 5 (the last); the
    training metrics at every epoch (steps: 32 images in batches of 16, 2 optimizer steps an epoch)."""
    train_run(*TINY, "trainer.epochs=5", "trainer.eval_every=2")
    (run,) = runs_of(train_run.uri)
    client = MlflowClient(train_run.uri)
    steps = lambda key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key))  # noqa: E731
    assert steps(rec.TEST_ACC) == [4, 8, 10]
    assert steps(rec.TEST_LOSS) == [4, 8, 10]
    assert steps(rec.TRAIN_LOSS) == [2, 4, 6, 8, 10]
    assert run.data.metrics[rec.BEST_EPOCH] in (2.0, 4.0, 5.0)


# ----------------------------------------------------------------------------- PMP: update_unit=epochs


def pmp(sparsity: float = 0.6, **schedule) -> GradualMagnitude:
    sch = OmegaConf.create({"name": "linear", "initial_sparsity": 0.0, "start": 0.0, "end": 0.5,
                            "update_frequency": 50, "update_unit": "iterations", **schedule})
    return GradualMagnitude(OmegaConf.create({"name": "pmp", "scope": "global"}), sparsity, sch)


@pytest.mark.parametrize(("steps_per_epoch", "epochs", "schedule", "want"), [
    # 30 steps; window round(0.1*30)=3 .. round(0.5*30)=15; every 4: 3, 7, 11, then the end 15
    (10, 3, {"start": 0.1, "end": 0.5, "update_frequency": 4}, [3, 7, 11, 15]),
    # 28 steps; window 0 .. 14; every 5: 0, 5, 10, then 14 (a shorter last interval)
    (7, 4, {"end": 0.5, "update_frequency": 5}, [0, 5, 10, 14]),
    # 50 steps; window 0 .. 30; every epoch (10 steps): 0, 10, 20, 30
    (10, 5, {"end": 0.6, "update_frequency": 1, "update_unit": "epochs"}, [0, 10, 20, 30]),
    # 50 steps; window 10 .. 40; every 2 epochs (20 steps): 10, 30, then 40
    (10, 5, {"start": 0.2, "end": 0.8, "update_frequency": 2, "update_unit": "epochs"}, [10, 30, 40]),
    # a frequency past the window: the start and the end only
    (4, 2, {"end": 0.5, "update_frequency": 50}, [0, 4]),
    # an empty window (start = end = 0.75 of 8 steps = 6): one update at step 6
    (4, 2, {"start": 0.75, "end": 0.75, "update_frequency": 1}, [6]),
])
def test_plan_lists_the_update_steps(steps_per_epoch, epochs, schedule, want):
    method = pmp(**schedule)
    assert method.plan(steps_per_epoch, epochs) == want
    assert method.updates == want
    assert (method.start_step, method.end_step) == (want[0], want[-1])


def global_top_magnitudes(weights: list[torch.Tensor], masks: list[torch.Tensor], zeros: int) -> torch.Tensor:
    """Brute force: the flat 0/1 mask keeping the N - ``zeros`` largest |w| among active weights
    (a stable descending sort over all layers at once: ties go to the earlier position)."""
    flat = torch.cat([w.detach().abs().flatten() for w in weights])
    active = torch.cat([m.flatten() for m in masks]) != 0
    keys = torch.where(active, flat, torch.tensor(-float("inf")))
    keep = torch.sort(keys, descending=True, stable=True).indices[: flat.numel() - zeros]
    out = torch.zeros(flat.numel())
    out[keep] = 1.0
    return out


@needs_mnist
def test_update_unit_epochs_moves_the_sparsity_only_at_epoch_boundaries(train_run, monkeypatch):
    """64 images at batch 16: 4 steps an epoch, 16 over 4 epochs. The window ends at
    0.75 * 16 = step 12; one update an epoch: steps 0, 4, 8, 12 at t = 0, 1/3, 2/3, 1 of the
    linear ramp to 0.6, i.e. sparsity 0, 0.2, 0.4, 0.6. Of 266,200 weights that is
    0, 53,240, 106,480 and 159,720 zeros (all exact products).

    On the way, two invariants of the loop: after every optimizer step every masked weight is
    exactly 0.0 (the masked update), and every update keeps the globally largest |w| of the
    still-active weights (scope=global), checked by brute force."""
    zeros_after_step: dict[int, int] = {}
    leaks: list[int] = []
    wrong_updates: list[int] = []
    real = GradualMagnitude.after_step

    def spy(self, ctx, step):
        masks = ctx.masks
        if any(bool((w[m == 0] != 0).any()) for w, m in zip(masks.weights, masks.masks)):
            leaks.append(step)
        before = [w.detach().clone() for w in masks.weights], masks.state()
        changed = real(self, ctx, step)
        zeros_after_step[step] = masks.num_zeros()
        if changed:
            want = global_top_magnitudes(*before, zeros_after_step[step])
            if not torch.equal(torch.cat([m.flatten() for m in masks.masks]), want):
                wrong_updates.append(step)
        return changed

    monkeypatch.setattr(GradualMagnitude, "after_step", spy)
    out = train_run("pruner=pmp", "sparsity=0.6", "schedule.update_unit=epochs", "schedule.update_frequency=1",
                    "schedule.end=0.75", "data.train_subset=64", "data.test_subset=50", "trainer.batch_size=16",
                    "trainer.epochs=4", "trainer.eval_batch_size=50", "trainer.threads=1", uri=None)
    want = {s: 0 for s in (1, 2, 3)} | {s: 53_240 for s in (4, 5, 6, 7)} | {s: 106_480 for s in (8, 9, 10, 11)} \
        | {s: 159_720 for s in range(12, 17)}
    assert zeros_after_step == want
    assert leaks == [] and wrong_updates == []
    assert out.value[rec.NUM_ZEROS] == 159_720.0
    assert out.value[rec.MASK_UPDATES] == 3.0  # step 0 is at sparsity 0 and prunes nothing


# ----------------------------------------------------------------------------- Ctrl-C ends the run KILLED


@needs_mnist
def test_ctrl_c_ends_the_run_killed_and_keeps_what_was_logged(train_run, monkeypatch):
    """A KeyboardInterrupt in the second epoch: the interrupt reaches the caller, and the MLflow
    run ends KILLED ("interrupted"), never RUNNING or FAILED, with epoch 1's metrics kept."""
    from repro.engine import Engine

    real = Engine.train_epoch

    def interrupted_in_epoch_2(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(Engine, "train_epoch", interrupted_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_run(*TINY, "trainer.epochs=3")
    (run,) = runs_of(train_run.uri)
    assert run.info.status == "KILLED"
    assert run.data.tags[rec.FAILURE_TAG] == "interrupted"
    history = MlflowClient(train_run.uri).get_metric_history(run.info.run_id, rec.TRAIN_LOSS)
    assert [m.step for m in history] == [2]  # epoch 1 ends at optimizer step 2


# ----------------------------------------------------------------------------- CIFAR augmentation


CIFAR_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
CIFAR_STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


def cifar_jpegs(per_class: int = 2) -> Split:
    """The first ``per_class`` JPEGs of the first 8 classes of the offline copy: 16 real images."""
    from torchvision.io import ImageReadMode, decode_image

    root = SHARED_DATA / "cifar10-jpeg" / "train"
    images, labels = [], []
    for label, cls in enumerate(sorted(d.name for d in root.iterdir() if d.is_dir())[:8]):
        for file in sorted((root / cls).iterdir())[:per_class]:
            images.append(decode_image(str(file), mode=ImageReadMode.RGB))
            labels.append(label)
    return Split(torch.stack(images), torch.tensor(labels))


def all_crops_and_flips(images: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Every pad-4 crop and horizontal flip of every image, normalised by hand:
    shape (n, 2 * 9 * 9, 3, 32, 32), index flip * 81 + dy * 9 + dx."""
    padded = torch.nn.functional.pad(images.float(), (pad, pad, pad, pad))
    h, w = images.shape[-2:]
    out = []
    for flip in (False, True):
        src = padded.flip(-1) if flip else padded
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                crop = src[:, :, dy : dy + h, dx : dx + w]
                out.append((crop / 255.0 - CIFAR_MEAN) / CIFAR_STD)
    return torch.stack(out, dim=1)


def identify(seen: torch.Tensor, labels: torch.Tensor, candidates: torch.Tensor,
             source_labels: torch.Tensor) -> list[tuple[int, int]]:
    """For each image the model saw, the (source image, variant) it is: an exhaustive search
    among every crop and flip of the sources of its label."""
    found = []
    for img, label in zip(seen, labels):
        sources = torch.nonzero(source_labels == label).view(-1)
        dist = (candidates[sources].flatten(2) - img.flatten()).abs().amax(dim=2)  # sources x variants
        best = int(dist.argmin())
        row, variant = divmod(best, dist.shape[1])
        assert float(dist.flatten()[best]) < 1e-4, "an image the model saw is no pad-4 crop/flip of its sources"
        found.append((int(sources[row]), variant))
    return found


@needs_cifar
@pytest.mark.parametrize("augment", [True, False])
def test_cifar_augmentation_reaches_the_training_loop(train_run, monkeypatch, augment):
    """16 real CIFAR images, one batch an epoch, three epochs. With data.augment=true every
    image the loop trains on is a pad-4 random crop / flip of a source image, drawn afresh
    each epoch; with data.augment=false it trains on the untouched images, the same set every
    epoch. (The copy's full decode is replaced by these 16 images: the point is the path from
    the config to the batches, not the decoder.)"""
    from repro import data as data_mod

    train = cifar_jpegs()
    tiny = Dataset(name="cifar10", source="jpeg", train=train, test=Split(train.images[:8], train.labels[:8]))
    monkeypatch.setattr(data_mod, "load", lambda name, *a, **k: tiny)
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    real = Batches.epoch

    def spy(self, seed, epoch, start=0):
        for x, y in real(self, seed, epoch, start):
            seen.append((epoch, x.detach().clone(), y.clone()))
            yield x, y

    monkeypatch.setattr(Batches, "epoch", spy)
    train_run("data=cifar10", f"data.augment={str(augment).lower()}", "model=resnet20", "model.width=0.25",
              "trainer.batch_size=16", "trainer.epochs=3", "trainer.threads=1", uri=None)
    assert [e for e, _, _ in seen] == [0, 1, 2]
    candidates = all_crops_and_flips(train.images)
    identity = 4 * 9 + 4  # no flip, dy = dx = 4: the image itself
    per_epoch = []
    for _, x, y in seen:
        found = identify(x, y, candidates, train.labels)
        assert sorted(s for s, _ in found) == list(range(16))  # every image once an epoch
        per_epoch.append(dict(found))
    if augment:
        for variants in per_epoch:
            assert sum(v != identity for v in variants.values()) >= 12  # P(identity) = 1/162 per image
        for a, b in zip(per_epoch, per_epoch[1:]):
            assert sum(a[s] != b[s] for s in range(16)) >= 12  # fresh draws every epoch
    else:
        assert all(v == identity for variants in per_epoch for v in variants.values())
