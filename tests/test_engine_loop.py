"""The loop's own bookkeeping: the learning rate per step and the epoch's train metrics."""

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from repro import records
from repro.pruning.methods import Method
from tests.test_iterative import OPTIM, engine_for, synthetic


class Recorder(Method):
    """Dense; records the LR the optimizer holds for the next step, after every step."""

    def __init__(self):
        super().__init__(OmegaConf.create({"name": "dense"}), 0.0, None)
        self.lrs: list[float] = []

    def after_step(self, ctx, step):
        self.lrs.append(ctx.optimizer.param_groups[0]["lr"])
        return False


#: the LR held after each of the 16 steps (4 epochs of 4 batches, lr 0.05), written out by hand:
#: warm-up over the first epoch reaches (k + 1)/4 of 0.05 after step k; multistep at 0.5 and
#: 0.75 of 4 epochs divides by 10 from step 8 and again from step 12; cosine decays over the
#: 12 steps after warm-up; constant never moves.
COSINE_TAIL = [0.025 * (1 + math.cos(math.pi * (k - 4) / 12)) for k in range(4, 17)]
EXPECTED_LRS = {
    "multistep": [0.025, 0.0375, 0.05, 0.05, 0.05, 0.05, 0.05, 0.005, 0.005, 0.005, 0.005,
                  0.0005, 0.0005, 0.0005, 0.0005, 0.0005],
    "cosine": [0.025, 0.0375, 0.05, *COSINE_TAIL],
    "constant": [0.05] * 16,
}


@pytest.mark.parametrize("schedule", [
    {"lr_schedule": "multistep", "milestones": [0.5, 0.75], "warmup_epochs": 1},
    {"lr_schedule": "cosine", "warmup_epochs": 1},
    {"lr_schedule": "constant", "warmup_epochs": 0},
])
def test_learning_rate_per_step_follows_warmup_and_schedule(schedule):
    optim = OmegaConf.merge(OPTIM, schedule)
    rec = Recorder()
    eng = engine_for(rec, model_name="lenet300", epochs=4)
    assert eng.steps_per_epoch == 4  # 64 synthetic images in batches of 16
    eng.optim_cfg = optim
    eng._new_optimizer(0)
    eng.ctx.optimizer = eng.optimizer
    eng.run()
    assert rec.lrs == pytest.approx(EXPECTED_LRS[schedule["lr_schedule"]], rel=1e-12)


def test_epoch_train_metrics_are_sample_weighted_over_every_batch():
    """train_loss/train_acc weight each batch by its size (the last batch is short)."""
    data = synthetic(n=70, name="mnist")  # 70 = 4 batches of 16 + 6
    rec = Recorder()
    eng = engine_for(rec, model_name="lenet300", epochs=1, data=data)
    batches, outs = [], []
    real_forward = eng.forward

    def spy(x):
        out = real_forward(x)
        batches.append(len(x))
        outs.append(out.detach().clone())
        return out

    eng.forward = spy
    labels = [y for _, y in eng.batches.epoch(0, 0)]
    metrics = eng.train_epoch(0)
    assert batches == [16, 16, 16, 16, 6]
    loss = sum(F.cross_entropy(o, y, reduction="sum").item() for o, y in zip(outs, labels)) / 70
    correct = sum(int((o.argmax(1) == y).sum()) for o, y in zip(outs, labels))
    assert metrics[records.TRAIN_LOSS] == pytest.approx(loss, rel=1e-5)
    assert metrics[records.TRAIN_ACC] == 100.0 * correct / 70  # percent


def test_masks_survive_the_engines_memory_format_move():
    """channels_last (the CUDA default for CNNs) and device moves replace the mask buffers: the
    masks the loop prunes must be the ones the model's state_dict (checkpoints, saved models) holds."""
    from repro.pruning.methods import GradualMagnitude

    schedule = OmegaConf.create({"name": "linear", "initial_sparsity": 0.0, "start": 0.0, "end": 0.5,
                                 "update_frequency": 1, "update_unit": "iterations"})
    pmp = GradualMagnitude(OmegaConf.create({"name": "pmp", "scope": "global"}), 0.8, schedule)
    eng = engine_for(pmp, epochs=2, channels_last=True)
    eng.run()
    saved = eng.model.state_dict()
    for name, mask in zip(eng.masks.names, eng.masks.masks):
        assert torch.equal(saved[f"{name}.weight_mask"], mask), name
        assert bool((saved[f"{name}.weight"][mask == 0] == 0).all()), name
    assert eng.masks.num_zeros() == sum(int((v == 0).sum()) for k, v in saved.items() if k.endswith("weight_mask"))
    assert eng.masks.sparsity() == pytest.approx(0.8, abs=1e-4)


class _OnAnotherDevice:
    """Stands in for the RNG state that ``torch.load(map_location=cuda)`` puts on the GPU:
    ``torch.set_rng_state`` refuses anything but a CPU ByteTensor."""

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state

    def cpu(self) -> torch.Tensor:
        return self.state


def test_resume_restores_the_cpu_rng_from_a_checkpoint_mapped_to_another_device(tmp_path, monkeypatch):
    eng = engine_for(Recorder(), model_name="lenet300", epochs=2, checkpoint_path=tmp_path / "ckpt.pt")
    eng.train_epoch(0)
    eng.state.epoch = 1
    eng.save_checkpoint()
    state = torch.get_rng_state()
    real_load = torch.load

    def load_to_device(*args, **kwargs):
        ckpt = real_load(*args, **kwargs)
        ckpt["rng"] = _OnAnotherDevice(ckpt["rng"])
        return ckpt

    monkeypatch.setattr(torch, "load", load_to_device)
    torch.manual_seed(123)  # move the generator on, so that resuming must restore it
    again = engine_for(Recorder(), model_name="lenet300", epochs=2, checkpoint_path=tmp_path / "ckpt.pt")
    assert again.try_resume()
    assert torch.equal(torch.get_rng_state(), state)
    assert again.state.epoch == 1


def test_auto_precision_is_bf16_only_where_the_gpu_computes_it_natively(monkeypatch):
    from repro import runtime

    assert runtime.resolve_precision("auto", torch.device("cpu")) == "fp32"
    asked = []

    def native(including_emulation=True):
        asked.append(including_emulation)
        return False

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", native)
    assert runtime.resolve_precision("auto", torch.device("cuda")) == "fp32"  # e.g. a V100: emulated only
    assert asked == [False]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert runtime.resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert runtime.resolve_precision("bf16", torch.device("cuda")) == "bf16"
    assert runtime.resolve_precision("fp32", torch.device("cuda")) == "fp32"


def test_fp32_turns_off_tf32_convolutions_and_bf16_restores_the_default():
    from repro import runtime

    try:
        assert runtime.use_precision("fp32") == {"tf32_cudnn": "false", "tf32_matmul": "false"}
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert runtime.use_precision("bf16") == {"tf32_cudnn": "true", "tf32_matmul": "false"}
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = True  # PyTorch's defaults
        torch.backends.cuda.matmul.allow_tf32 = False


def test_loop_config_takes_the_trainers_values_and_the_resolved_ones_win():
    from omegaconf import OmegaConf

    from repro.config import TrainerConfig
    from repro.engine import LoopConfig

    trainer = OmegaConf.structured(TrainerConfig(epochs=7, batch_size=33, eval_every=2, precision="auto"))
    loop = LoopConfig.from_trainer(trainer, seed=5, precision="bf16", channels_last=True, checkpoint_path=None)
    assert (loop.epochs, loop.batch_size, loop.eval_every, loop.eval_batch_size, loop.seed, loop.precision,
            loop.channels_last, loop.compile) == (7, 33, 2, 1000, 5, "bf16", True, False)
