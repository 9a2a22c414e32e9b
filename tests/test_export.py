"""repro.export: the CSR export round-trips exactly, its sizes are the layout's bytes, the
sparse-kernel model computes what the dense one does, and bad input is one line, exit 2,
nothing written. No timing is asserted (the latency code runs once, at a tiny size)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from repro import models
from repro import records as rec
from repro.export import ExportError, load_exported, measure_latency, read_export, sparse_model
from repro.export.cli import main
from repro.export.layout import save_tensors, tensor_bytes
from repro.export.pipeline import after_training, export
from repro.export.spec import infer_spec
from repro.pruning.masks import MaskSet
from tests.conftest import needs_mnist, runs_of

#: (model, width, in_channels): an MLP, a VGG with BatchNorm, a ResNet with 1x1 downsample shortcuts
MODELS = [("lenet300", 1.0, 1), ("vgg_like", 0.0625, 3), ("resnet20", 0.25, 3)]
IDS = [m[0] for m in MODELS]


def pruned(name: str, width: float, in_channels: int, sparsity: float = 0.9) -> nn.Module:
    """A model with a random global mask at ``sparsity`` and non-default BN statistics and affine
    parameters (with the defaults, an export that forgot BN buffers would still match)."""
    torch.manual_seed(0)
    model = models.build(name, in_channels=in_channels, width=width)
    masks = MaskSet(model)
    masks.prune_to([torch.rand_like(w) for w in masks.weights], sparsity)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def batch(model_name: str, in_channels: int, n: int = 4) -> torch.Tensor:
    size = 28 if model_name.startswith("lenet") else 32
    return torch.randn(n, in_channels, size, size, generator=torch.Generator().manual_seed(1))


def exported(model: nn.Module, tmp_path: Path) -> tuple[Path, dict]:
    out = tmp_path / "export"
    return out, export(model.state_dict(), infer_spec(model.state_dict()), out)


# ----------------------------------------------------------------------------- round trip
@pytest.mark.parametrize(("name", "width", "channels"), MODELS, ids=IDS)
def test_export_then_load_gives_identical_logits(tmp_path, name, width, channels):
    model = pruned(name, width, channels)
    out, meta = exported(model, tmp_path)
    loaded = load_exported(out)
    x = batch(name, channels)
    with torch.no_grad():
        diff = (loaded(x) - model(x)).abs().max().item()
    assert diff == 0.0  # values are copied, not recomputed: bit-identical in fp32
    assert meta["model"] == {"name": name, "width": width, "in_channels": channels, "num_classes": 10}
    state = model.state_dict()
    for layer, info in meta["layers"].items():  # nonzeros per layer = the mask's ones
        assert info["nnz"] == int(state[layer + "_mask"].sum())
        assert torch.equal(loaded.state_dict()[layer], state[layer])
    assert not any(k.endswith("_mask") for k in loaded.state_dict())


def _drop_last(cols: torch.Tensor) -> torch.Tensor:
    return cols[:-1]


def _swap_first_two(cols: torch.Tensor) -> torch.Tensor:
    return torch.cat([cols[:2].flip(0), cols[2:]])  # row 0 of fc2 keeps ~30 weights: both in one row


@pytest.mark.parametrize("damage", [_drop_last, _swap_first_two], ids=["index dropped", "columns out of order"])
def test_a_damaged_csr_is_refused_with_the_tensor_named(tmp_path, damage):
    out, meta = exported(pruned("lenet300", 1.0, 1), tmp_path)
    _, tensors = read_export(out)
    assert int(tensors["fc2.weight.crow_indices"][1]) >= 2
    tensors["fc2.weight.col_indices"] = damage(tensors["fc2.weight.col_indices"])
    save_tensors(tensors, out / meta["file"], meta["container"])
    with pytest.raises(ExportError, match="fc2.weight"):
        load_exported(out)


# ----------------------------------------------------------------------------- sizes
def hand_count(state: dict, meta: dict) -> int:
    """CSR by hand: 4 bytes per fp32 value and per int32 column index, 4 per row pointer (rows + 1);
    every other tensor dense at its own element size; masks not stored."""
    total = 0
    for name, value in state.items():
        if name.endswith("_mask"):
            continue
        if name in meta["layers"]:
            nnz = int(state[name + "_mask"].sum())
            total += nnz * 4 + nnz * 4 + (value.shape[0] + 1) * 4
        else:
            total += value.numel() * value.element_size()
    return total


@pytest.mark.parametrize(("name", "width", "channels"), MODELS, ids=IDS)
def test_sizes_are_the_bytes_of_the_layout_and_of_the_file(tmp_path, name, width, channels):
    model = pruned(name, width, channels)
    out, meta = exported(model, tmp_path)
    sizes, state = meta["sizes"], model.state_dict()
    _, tensors = read_export(out)
    assert sizes[rec.SIZE_SPARSE_PAYLOAD_BYTES] == tensor_bytes(tensors) == hand_count(state, meta)
    data = (out / meta["file"]).read_bytes()
    assert sizes[rec.SIZE_SPARSE_BYTES] == len(data) > sizes[rec.SIZE_SPARSE_PAYLOAD_BYTES]
    assert sizes[rec.SIZE_SPARSE_GZIP_BYTES] == len(gzip.compress(data, compresslevel=6, mtime=0))
    dense_payload = sum(v.numel() * v.element_size() for k, v in state.items() if not k.endswith("_mask"))
    assert sizes[rec.SIZE_DENSE_PAYLOAD_BYTES] == dense_payload
    params = dict(model.named_parameters())
    assert sizes[rec.SIZE_PARAMS] == sum(p.numel() for p in params.values())
    assert sizes[rec.SIZE_NONZERO_PARAMS] == sum(int(p.count_nonzero()) for p in params.values())
    assert sizes[rec.SIZE_SPARSE_BYTES] < sizes[rec.SIZE_DENSE_BYTES]  # 90%: the CSR file is smaller
    assert json.loads((out / "model.json").read_text())["sizes"] == sizes


# ----------------------------------------------------------------------------- sparse kernels
@pytest.mark.parametrize(("name", "width", "channels"), MODELS, ids=IDS)
def test_sparse_kernel_model_matches_the_dense_one(tmp_path, name, width, channels):
    out, meta = exported(pruned(name, width, channels), tmp_path)
    dense = load_exported(out)
    sparse, kinds = sparse_model(dense, meta["layers"])
    assert set(kinds) == {n.removesuffix(".weight") for n in meta["layers"]}
    assert set(kinds.values()) == {"csr"}  # conv: unfold + CSR matmul passed its probe
    for n in (1, 3):
        x = batch(name, channels, n)
        with torch.no_grad():
            torch.testing.assert_close(sparse(x), dense(x), rtol=0, atol=1e-5)


def test_latency_runs_and_reports_medians_threads_and_ratios():
    model = pruned("lenet300", 1.0, 1)
    sparse, _ = sparse_model(model, [n for n, _ in model.named_parameters() if n.endswith("weight")])
    result = measure_latency(model, sparse, (1, 1, 28, 28), batches=(1, 8), repeats=2, warmup=0)
    assert result["threads"] == torch.get_num_threads()
    assert [r["batch"] for r in result["results"]] == [1, 8]
    assert all(r["speedup"] > 0 and r["dense_s"] > 0 and r["sparse_s"] > 0 for r in result["results"])


# ----------------------------------------------------------------------------- the command
def checkpoint_file(tmp_path: Path, state: dict) -> Path:
    """A file shaped like the engine's checkpoints (the model's state under ``model``)."""
    path = tmp_path / "ckpt.pt"
    torch.save({"model": state, "optimizer": {}, "method": {}, "loop": {"epoch": 1}, "rng": torch.get_rng_state()}, path)
    return path


def test_cli_exports_a_training_checkpoint(tmp_path, capsys):
    model = pruned("resnet20", 0.25, 3)
    out = tmp_path / "out"
    assert main([str(checkpoint_file(tmp_path, model.state_dict())), "--out", str(out)]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"]["name"] == "resnet20" and meta["model"]["width"] == 0.25
    assert "zstd" in capsys.readouterr().out


def _refused(capsys, argv: list[str], out: Path, match: str) -> None:
    assert main([*argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], captured.err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no temporary left


def test_a_path_that_does_not_exist_is_refused(tmp_path, capsys):
    _refused(capsys, [str(tmp_path / "nope.pt")], tmp_path / "out", "no such file")


def test_a_checkpoint_without_masks_is_refused(tmp_path, capsys):
    state = {k: v for k, v in pruned("lenet300", 1.0, 1).state_dict().items() if not k.endswith("_mask")}
    _refused(capsys, [str(checkpoint_file(tmp_path, state))], tmp_path / "out", "weight_mask")


def test_an_unknown_run_id_is_refused(tmp_path, capsys, mlflow_uri):
    _refused(capsys, ["0" * 32, "--tracking-uri", mlflow_uri], tmp_path / "out", "not found")


def test_a_missing_store_is_refused_and_not_created(tmp_path, capsys):
    db = tmp_path / "none.db"
    _refused(capsys, ["0" * 32, "--tracking-uri", f"sqlite:///{db}"], tmp_path / "out", "no tracking store")
    assert not db.exists()


def test_a_non_empty_out_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = [str(checkpoint_file(tmp_path, pruned("lenet300", 1.0, 1).state_dict())), "--out", str(out)]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: --out")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


# ----------------------------------------------------------------------------- trainer.export=true
class Recorder:
    """A tracker that remembers what it was given."""

    run_id = "r1"

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.files: list[tuple[str, str | None]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.update(metrics)

    def log_file(self, path: Path, artifact_path: str | None = None) -> None:
        self.files.append((path.name, artifact_path))


def test_after_training_logs_sizes_and_the_folder_only_when_asked():
    from omegaconf import OmegaConf

    model = pruned("vgg_like", 0.0625, 3)
    cfg = OmegaConf.create({"trainer": {"export": False}, "model": {"name": "vgg_like", "width": 0.0625}})
    tracker = Recorder()
    assert after_training(cfg, model, tracker) is None and not tracker.metrics
    cfg.trainer.export = True
    sizes = after_training(cfg, model, tracker)
    assert tracker.metrics == sizes and rec.SIZE_SPARSE_BYTES in sizes
    assert sorted(tracker.files) == [("model.json", rec.EXPORT_ARTIFACT_DIR), ("model.safetensors", rec.EXPORT_ARTIFACT_DIR)]


@needs_mnist
def test_a_run_with_trainer_export_logs_sizes_and_exports_again_by_run_id(train_run, tmp_path, capsys):
    train_run("model=lenet300", "data=mnist", "trainer.epochs=1", "trainer.batch_size=100", "data.train_subset=500",
              "data.test_subset=200", "data.download=false", "pruner=pmp", "sparsity=0.9", "trainer.export=true")
    (run,) = runs_of(train_run.uri)
    assert run.data.metrics[rec.SIZE_NONZERO_PARAMS] < run.data.metrics[rec.SIZE_PARAMS]
    out = tmp_path / "again"
    assert main([run.info.run_id, "--out", str(out), "--tracking-uri", train_run.uri]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["source"] == run.info.run_id and meta["sizes"] == {k: v for k, v in run.data.metrics.items()
                                                                  if k.startswith(rec.SIZE_PREFIX)}


# ----------------------------------------------------------------------------- the bench part (tools/bench/sparse.py)
def _bench_sparse():
    import importlib
    import sys

    tools = str(Path(__file__).resolve().parent.parent / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    return importlib.import_module("bench.sparse")


def test_crossover_is_the_lowest_sparsity_from_which_sparse_always_wins():
    crossover = _bench_sparse().crossover
    rows = [{"shape": "a", "batch": 1, "sparsity": s, "speedup": v} for s, v in ((0.5, 1.2), (0.7, 0.9), (0.9, 1.1), (0.99, 3.0))]
    assert crossover(rows, "a", 1) == 0.9
    assert crossover([{**r, "speedup": 0.5} for r in rows], "a", 1) is None


def test_sparse_bench_smoke_writes_json_and_markdown(tmp_path):
    sparse = _bench_sparse()
    spec = sparse.SparseSpec(shapes=sparse.QUICK.shapes, sparsities=(0.9,), batches=(1, 2), repeats=1, warmup=0)
    result = sparse.bench_sparse(spec, log=lambda msg: None)
    result["quick"] = True
    path, md = sparse.write(result, tmp_path)
    assert len(json.loads(path.read_text())["rows"]) == len(spec.shapes) * 2
    assert "crossover at batch 2" in md.read_text() and "not a measurement" in md.read_text()
