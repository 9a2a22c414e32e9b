"""The names of every MLflow tag, param, metric and artifact the suite writes and reads.

The training side (``train.py``, ``tracking.py``, ``engine/``) writes records under
these names and the report reads them under the same names, so renaming a record is a
change in one place. A name that only one side knows is a bug waiting to happen: both
sides import from here and spell no record name as a string literal of their own.
"""

from __future__ import annotations

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

# ----------------------------------------------------------------------------- metrics
# per epoch
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
TEST_LOSS = "test_loss"
TEST_ACC = "test_acc"
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"
SPARSITY = "sparsity"
SPARSITY_ALL = "sparsity_all"
EPOCH_TIME = "epoch_time"
SAMPLES_PER_S = "samples_per_s"
LR = "lr"
MASK_FINAL = "mask_final"
EPOCH = "epoch"
CYCLE = "cycle"
# once per run (accuracies are fractions in [0, 1]; the report shows percent)
FINAL_TEST_ACC = "final_test_acc"
FINAL_TEST_LOSS = "final_test_loss"
BEST_TEST_ACC = "best_test_acc"
BEST_EPOCH = "best_epoch"
#: 1.0: best_test_acc is the test accuracy at the best *validation* epoch; 0.0: the run had no
#: validation split and the epoch was chosen on the test set itself (test-selected, optimistic)
BEST_ON_VAL = "best_on_val"
#: the highest test accuracy over the evaluated epochs on the final mask of the last cycle: the
#: "max over kept checkpoints" some papers report (SNIP: 1 - max test accuracy); test-selected
MAX_TEST_ACC = "max_test_acc"
FINAL_SPARSITY = "final_sparsity"
FINAL_SPARSITY_ALL = "final_sparsity_all"
#: zeros over every conv/linear weight, pruned or not (LTH's denominator)
FINAL_SPARSITY_WEIGHTS = "final_sparsity_weights"
NUM_PRUNABLE = "num_prunable"
NUM_PARAMS = "num_params"
NUM_ZEROS = "num_zeros"
LAYER_COLLAPSE = "layer_collapse"
TOTAL_STEPS = "total_steps"
#: how many times the mask changed (PMP/GMP with fewer than 3 are one-shot pruning in disguise)
MASK_UPDATES = "mask_updates"
#: weights a regrowing method (SET, RigL) revived at one mask update, logged at that update's
#: optimizer step counted over all cycles (its own series: its steps are not epochs)
REGROWN = "regrown"
#: the drop fraction in force at that update (RigL anneals it by cosine)
UPDATE_DROP_FRACTION = "update_drop_fraction"
#: every cost metric starts with this prefix (cost_iterations, cost_train_flops, ...)
COST_PREFIX = "cost_"
COST_ITERATIONS = "cost_iterations"
COST_EPOCHS = "cost_epochs"
COST_CYCLES = "cost_cycles"
COST_TRAIN_FLOPS = "cost_train_flops"
COST_INFERENCE_FLOPS = "cost_inference_flops"
COST_DENSE_CYCLE_FLOPS = "cost_dense_cycle_flops"

# ----------------------------------------------------------------------------- artifacts
CONFIG_ARTIFACT = "config.yaml"
LAYER_DENSITY_ARTIFACT = "layer_density.csv"
FINAL_STATE_ARTIFACT = "final_state_dict.pt"

#: the columns of the layer-density artifact, in order
LAYER_DENSITY_COLUMNS = ("layer", "shape", "weights", "kept", "density")


def profile_tag(profile: str) -> str:
    """The membership tag of a profile (see PROFILE_TAG_PREFIX)."""
    return PROFILE_TAG_PREFIX + profile

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
SIZE_PREFIX = "size_"
#: the dense fp32 state dict without masks, in the export's container (safetensors or torch.save)
SIZE_DENSE_BYTES = "size_dense_bytes"
SIZE_DENSE_GZIP_BYTES = "size_dense_gzip_bytes"
#: logged only where the ``zstandard`` module is installed
SIZE_DENSE_ZSTD_BYTES = "size_dense_zstd_bytes"
#: the exported file (CSR for pruned weights, the rest dense)
SIZE_SPARSE_BYTES = "size_sparse_bytes"
SIZE_SPARSE_GZIP_BYTES = "size_sparse_gzip_bytes"
SIZE_SPARSE_ZSTD_BYTES = "size_sparse_zstd_bytes"
#: bytes of the tensors alone (values + indices), whatever the container adds around them
SIZE_DENSE_PAYLOAD_BYTES = "size_dense_payload_bytes"
SIZE_SPARSE_PAYLOAD_BYTES = "size_sparse_payload_bytes"
#: parameters of the model, and those that are not zero
SIZE_PARAMS = "size_params"
SIZE_NONZERO_PARAMS = "size_nonzero_params"
#: the artifact folder holding model.json and the tensor file (trainer.export=true)
EXPORT_ARTIFACT_DIR = "export"

# ----------------------------------------------------------------------------- latency (repro.export.profile_latency)
#: every CPU latency metric of a run starts with this prefix; logged after training by
#: ``repro-export --profile NAME --latency --log`` (one process, one run after another), never by training
LATENCY_PREFIX = "latency_"
#: forward pass at batch 1, ms: the dense model, and the one whose layers multiply by CSR weights
LATENCY_DENSE_B1_MS = "latency_dense_b1_ms"
LATENCY_SPARSE_B1_MS = "latency_sparse_b1_ms"
#: median over rounds of the per-round ratio dense / sparse time (> 1: the sparse kernels are faster)
LATENCY_SPEEDUP_B1 = "latency_speedup_b1"
#: images per second at batch 256, dense and sparse, and the paired ratio as at batch 1
LATENCY_DENSE_B256_IPS = "latency_dense_b256_images_per_s"
LATENCY_SPARSE_B256_IPS = "latency_sparse_b256_images_per_s"
LATENCY_SPEEDUP_B256 = "latency_speedup_b256"
#: torch CPU threads the timings ran with, interleaved rounds per figure, layers that got a CSR kernel
LATENCY_THREADS = "latency_threads"
LATENCY_ROUNDS = "latency_rounds"
LATENCY_CSR_LAYERS = "latency_csr_layers"
#: the metric whose presence means "this run was timed" (the others are logged with it, in one batch)
LATENCY_DONE = LATENCY_SPEEDUP_B1
#: where the latency was measured: CPU model, cores, torch version, UTC date
LATENCY_MACHINE_TAG = "repro.latency_machine"
