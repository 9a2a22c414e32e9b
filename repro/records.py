"""The names of every MLflow tag, param, metric and artifact the suite writes and reads.

The training side (``train.py``, ``tracking.py``, ``engine/``) writes records under
these names and the report reads them under the same names, so renaming a record is a
change in one place. A name that only one side knows is a bug waiting to happen: both
sides import from here and spell no record name as a string literal of their own.
"""

from __future__ import annotations

from collections.abc import Mapping

# ----------------------------------------------------------------------------- tags
#: the run identity: hash of the non-default, result-relevant config (see repro.identity)
IDENTITY_TAG = "repro.identity"
#: the identity the suite computed before identities were taken from non-default values;
#: written on runs found by the fallback lookup so they are found by either
LEGACY_IDENTITY_TAG = "repro.identity_v1"
#: the run identity without the seed: runs that differ only in seed share it (the report's group)
GROUP_TAG = "repro.group"
#: why a run ended FAILED (first line of the error)
FAILURE_TAG = "repro.failure"
#: a resumed run started with another value of a key outside its identity: the new value
RESUMED_WITH_PREFIX = "repro.resumed_with."
#: membership of a profile that reused a FINISHED run: ``repro.profile.<name>`` = "1"
PROFILE_TAG_PREFIX = "repro.profile."
#: what kind of run this is (absent: a training run); see KIND_* values
KIND_TAG = "kind"
KIND_REPORT = "report"
#: an LTH chain: its targets are nested runs, the chain itself is not a result
KIND_CHAIN = "chain"
#: a multirun's parent run (repro.sweep_run): its jobs are its children; not a result
KIND_SWEEP = "sweep"
#: the sweep a run was launched by (its folder below multirun/, e.g. 2026-12-03/06-10-00)
SWEEP_TAG = "repro.sweep"
#: on a sweep's parent: how its jobs ended ("FINISHED 3, FAILED 1, skipped 2")
SWEEP_STATUS_TAG = "repro.sweep.status"
#: on a FINISHED run a later sweep skipped: ``repro.skipped_by.<sweep id>`` = "1"
SKIPPED_BY_PREFIX = "repro.skipped_by."
PROFILE_TAG = "profile"
METHOD_TAG = "method"
MODEL_TAG = "model"
DATASET_TAG = "dataset"
DATA_SOURCE_TAG = "data_source"
DEVICE_TAG = "device"
TORCH_VERSION_TAG = "torch_version"
GIT_COMMIT_TAG = "git_commit"
GIT_DIRTY_TAG = "git_dirty"
HYDRA_OVERRIDES_TAG = "hydra_overrides"
LAYER_COLLAPSE_TAG = "layer_collapse"
#: the LTH round (cycle) a nested target run was logged at
CYCLE_TAG = "cycle"
#: MLflow's own: the parent of a nested run, the run's display name
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"

# ----------------------------------------------------------------------------- params
# Params are the flattened resolved config (``a.b.c``); the report reads these.
SEED_PARAM = "seed"
SPARSITY_PARAM = "sparsity"
EPOCHS_PARAM = "trainer.epochs"
WIDTH_PARAM = "model.width"
MODEL_PARAM = "model.name"
DATASET_PARAM = "data.name"
METHOD_PARAM = "pruner.name"
TRAIN_SUBSET_PARAM = "data.train_subset"
TEST_SUBSET_PARAM = "data.test_subset"
#: a sweep parent's params: its folder, its overrides, how many jobs it ran or skipped
SWEEP_DIR_PARAM = "sweep.dir"
SWEEP_OVERRIDES_PARAM = "sweep.overrides"
SWEEP_JOBS_PARAM = "sweep.jobs"

# ----------------------------------------------------------------------------- metrics
# Namespaced (``group/name``) so the MLflow UI groups its charts; accuracies are percent
# everywhere (training log, MLflow, report). Runs written before the namespaces carry the
# flat names of LEGACY_METRICS, which the report reads through that map.
# Per epoch, at step = optimizer steps so far (over all cycles), the x-axis the mask
# updates share:
TRAIN_LOSS = "train/loss"
TRAIN_ACC = "train/acc"
TEST_LOSS = "test/loss"
TEST_ACC = "test/acc"
VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"
LR = "train/lr"
EPOCH_TIME = "perf/epoch_time_s"
SAMPLES_PER_S = "perf/samples_per_s"
# at every mask update (step = optimizer step) and at the end of every epoch (MASK_UPDATES: at updates only)
SPARSITY = "sparsity/prunable"
SPARSITY_ALL = "sparsity/all"
#: how many times the mask changed so far (PMP/GMP with fewer than 3 are one-shot pruning in disguise)
MASK_UPDATES = "mask/updates"
# Keys of the loop's per-epoch history that are not metrics (the step says when; they live in
# checkpoints and drive the headline rule)
EPOCH = "epoch"
CYCLE = "cycle"
MASK_FINAL = "mask_final"
# once per run, at its last optimizer step (an LTH target run: step 0)
FINAL_TEST_ACC = "final/test_acc"
FINAL_TEST_LOSS = "final/test_loss"
BEST_TEST_ACC = "final/best_test_acc"
BEST_EPOCH = "final/best_epoch"
#: 1.0: best_test_acc is the test accuracy at the best *validation* epoch; 0.0: the run had no
#: validation split and the epoch was chosen on the test set itself (test-selected, optimistic)
BEST_ON_VAL = "final/best_on_val"
#: the highest test accuracy over the evaluated epochs on the final mask of the last cycle: the
#: "max over kept checkpoints" some papers report (SNIP: 1 - max test accuracy); test-selected
MAX_TEST_ACC = "final/max_test_acc"
FINAL_SPARSITY = "final/sparsity"
FINAL_SPARSITY_ALL = "final/sparsity_all"
#: zeros over every conv/linear weight, pruned or not (LTH's denominator)
FINAL_SPARSITY_WEIGHTS = "final/sparsity_weights"
NUM_PRUNABLE = "mask/prunable"
NUM_PARAMS = "model/params"
NUM_ZEROS = "mask/zeros"
LAYER_COLLAPSE = "mask/layer_collapse"
TOTAL_STEPS = "final/total_steps"
#: every cost metric starts with this prefix (cost/iterations, cost/train_flops, ...)
COST_PREFIX = "cost/"
COST_ITERATIONS = "cost/iterations"
COST_EPOCHS = "cost/epochs"
COST_CYCLES = "cost/cycles"
COST_TRAIN_FLOPS = "cost/train_flops"
COST_INFERENCE_FLOPS = "cost/inference_flops"
COST_DENSE_CYCLE_FLOPS = "cost/dense_cycle_flops"
#: weights a regrowing method (SET, RigL) revived at one mask update, logged at that update's
#: optimizer step counted over all cycles
REGROWN = "mask/regrown"
#: the drop fraction in force at that update (RigL anneals it by cosine)
UPDATE_DROP_FRACTION = "mask/drop_fraction"

# ----------------------------------------------------------------------------- artifacts
CONFIG_ARTIFACT = "config.yaml"
LAYER_DENSITY_ARTIFACT = "layer_density.csv"
FINAL_STATE_ARTIFACT = "final_state_dict.pt"

#: the columns of the layer-density artifact, in order
LAYER_DENSITY_COLUMNS = ("layer", "shape", "weights", "kept", "density")


def profile_tag(profile: str) -> str:
    """The membership tag of a profile (see PROFILE_TAG_PREFIX)."""
    return PROFILE_TAG_PREFIX + profile


def skipped_by_tag(sweep: str) -> str:
    """The tag a sweep leaves on a FINISHED run it skipped (see SKIPPED_BY_PREFIX)."""
    return SKIPPED_BY_PREFIX + sweep

# ----------------------------------------------------------------------------- recipe params
# The report compares two methods (claim_relative) only where their runs share these
# flattened config values as well as the table's columns: same optimizer, learning rate,
# batch size and validation split.
OPTIM_NAME_PARAM = "optim.name"
OPTIM_LR_PARAM = "optim.lr"
BATCH_SIZE_PARAM = "trainer.batch_size"
VAL_SIZE_PARAM = "data.val_size"

# ----------------------------------------------------------------------------- threads (repro.threads)
#: the CPU threads torch trained with, in order of change ("2"; "1,2": beside another trainer at
#: first, alone later): bitwise CPU results depend on it
THREADS_TAG = "repro.threads"
#: the CPUs the training process could run on (its affinity), which the auto rule shares out
CORES_TAG = "repro.cores"

# ----------------------------------------------------------------------------- export (repro.export)
#: every size metric of an exported subnetwork starts with this prefix (bytes, or parameter counts)
SIZE_PREFIX = "size/"
#: the dense fp32 state dict without masks, in the export's container (safetensors or torch.save)
SIZE_DENSE_BYTES = "size/dense_bytes"
SIZE_DENSE_GZIP_BYTES = "size/dense_gzip_bytes"
#: logged only where the ``zstandard`` module is installed
SIZE_DENSE_ZSTD_BYTES = "size/dense_zstd_bytes"
#: the exported file (CSR for pruned weights, the rest dense)
SIZE_SPARSE_BYTES = "size/sparse_bytes"
SIZE_SPARSE_GZIP_BYTES = "size/sparse_gzip_bytes"
SIZE_SPARSE_ZSTD_BYTES = "size/sparse_zstd_bytes"
#: bytes of the tensors alone (values + indices), whatever the container adds around them
SIZE_DENSE_PAYLOAD_BYTES = "size/dense_payload_bytes"
SIZE_SPARSE_PAYLOAD_BYTES = "size/sparse_payload_bytes"
#: parameters of the model, and those that are not zero
SIZE_PARAMS = "size/params"
SIZE_NONZERO_PARAMS = "size/nonzero_params"
#: the artifact folder holding model.json and the tensor file (trainer.export=true)
EXPORT_ARTIFACT_DIR = "export"

# ----------------------------------------------------------------------------- latency (repro.export.profile_latency)
#: every CPU latency metric of a run starts with this prefix; logged after training by
#: ``repro-export --profile NAME --latency --log`` (one process, one run after another), never by training
LATENCY_PREFIX = "latency/"
#: forward pass at batch 1, ms: the dense model, and the one whose layers multiply by CSR weights
LATENCY_DENSE_B1_MS = "latency/dense_b1_ms"
LATENCY_SPARSE_B1_MS = "latency/sparse_b1_ms"
#: median over rounds of the per-round ratio dense / sparse time (> 1: the sparse kernels are faster)
LATENCY_SPEEDUP_B1 = "latency/speedup_b1"
#: images per second at batch 256, dense and sparse, and the paired ratio as at batch 1
LATENCY_DENSE_B256_IPS = "latency/dense_b256_images_per_s"
LATENCY_SPARSE_B256_IPS = "latency/sparse_b256_images_per_s"
LATENCY_SPEEDUP_B256 = "latency/speedup_b256"
#: torch CPU threads the timings ran with, interleaved rounds per figure, layers that got a CSR kernel
LATENCY_THREADS = "latency/threads"
LATENCY_ROUNDS = "latency/rounds"
LATENCY_CSR_LAYERS = "latency/csr_layers"
#: the metric whose presence means "this run was timed" (the others are logged with it, in one batch)
LATENCY_DONE = LATENCY_SPEEDUP_B1
#: where the latency was measured: CPU model, cores, torch version, UTC date
LATENCY_MACHINE_TAG = "repro.latency_machine"


# ----------------------------------------------------------------------------- legacy names
#: Old flat metric name (runs logged before the namespaces) -> (current name, factor from the old
#: unit to the current one: accuracies were fractions, now percent). The report reads an old
#: store through this map (repro.report.reading.migrate_legacy); a metric renamed later gets a
#: line here, one per old name.
LEGACY_METRICS: dict[str, tuple[str, float]] = {
    "train_loss": (TRAIN_LOSS, 1.0),
    "train_acc": (TRAIN_ACC, 100.0),
    "test_loss": (TEST_LOSS, 1.0),
    "test_acc": (TEST_ACC, 100.0),
    "val_loss": (VAL_LOSS, 1.0),
    "val_acc": (VAL_ACC, 100.0),
    "lr": (LR, 1.0),
    "epoch_time": (EPOCH_TIME, 1.0),
    "samples_per_s": (SAMPLES_PER_S, 1.0),
    "sparsity": (SPARSITY, 1.0),
    "sparsity_all": (SPARSITY_ALL, 1.0),
    "mask_updates": (MASK_UPDATES, 1.0),
    "final_test_acc": (FINAL_TEST_ACC, 100.0),
    "final_test_loss": (FINAL_TEST_LOSS, 1.0),
    "best_test_acc": (BEST_TEST_ACC, 100.0),
    "best_epoch": (BEST_EPOCH, 1.0),
    "best_on_val": (BEST_ON_VAL, 1.0),
    "max_test_acc": (MAX_TEST_ACC, 100.0),
    "final_sparsity": (FINAL_SPARSITY, 1.0),
    "final_sparsity_all": (FINAL_SPARSITY_ALL, 1.0),
    "final_sparsity_weights": (FINAL_SPARSITY_WEIGHTS, 1.0),
    "num_prunable": (NUM_PRUNABLE, 1.0),
    "num_params": (NUM_PARAMS, 1.0),
    "num_zeros": (NUM_ZEROS, 1.0),
    "layer_collapse": (LAYER_COLLAPSE, 1.0),
    "total_steps": (TOTAL_STEPS, 1.0),
    "regrown": (REGROWN, 1.0),
    "update_drop_fraction": (UPDATE_DROP_FRACTION, 1.0),
}
#: whole families renamed by prefix (cost_train_flops -> cost/train_flops, size_* -> size/*, latency_*)
LEGACY_PREFIXES: dict[str, str] = {"cost_": COST_PREFIX, "size_": SIZE_PREFIX, "latency_": LATENCY_PREFIX}


def legacy_metric(old: str) -> tuple[str, float] | None:
    """(current name, unit factor) of an old flat metric name, or None if it was never renamed."""
    if old in LEGACY_METRICS:
        return LEGACY_METRICS[old]
    for prefix, new in LEGACY_PREFIXES.items():
        if old.startswith(prefix):
            return new + old[len(prefix):], 1.0
    return None


def current_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """A run's metrics under the current names and units: old flat names (and fractions) are
    translated by :func:`legacy_metric`; a value logged under the current name wins."""
    out = {}
    for name, value in metrics.items():
        found = legacy_metric(name)
        if found is not None:
            new, factor = found
            out.setdefault(new, value * factor)
    out.update({k: v for k, v in metrics.items() if legacy_metric(k) is None})
    return out


def column(metric: str) -> str:
    """The report's column for a metric: the name with ``/`` as ``_`` (cost/train_flops ->
    cost_train_flops), the names the report's tables and CSVs have always shown."""
    return metric.replace("/", "_")
