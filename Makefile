# repro: every target that needs the virtual environment creates it first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= quick
# Offline mirrors beside the checkout (MNIST, CIFAR-10 JPEG); override to point elsewhere.
export REPRO_DATA_DIR ?= $(abspath ../shared/data)

ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
else
TORCH_PIN := torch==2.9.1 torchvision==0.24.1
endif

.PHONY: help setup test test-slow test-all mutants train reproduce-table latency report ui lint bench gpu-check gpu-pack fashion-mnist postgres clean

help:  ## list the targets, and where runs are read from and written to
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'
	@echo ""
	@echo "Where things go (from this directory):"
	@echo "  runs         the MLflow store $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} (MLFLOW_TRACKING_URI), experiment repro;"
	@echo "               train and reproduce-table write it, report and ui read it"
	@echo "  checkpoints  $${REPRO_CKPT_DIR:-checkpoints}/ (REPRO_CKPT_DIR); Hydra's logs in outputs/ and multirun/"
	@echo "  data         read from $(REPRO_DATA_DIR) (REPRO_DATA_DIR)"
	@echo "  report       results/PROFILE/ (table.md, table.csv, claims.csv, plots) and a kind=report run in the store"
	@echo "  .venv/bin/repro-train --help: groups, keys and example commands"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev,launchers,server]'
	touch $(STAMP)

fashion-mnist:  ## install Debian's dataset-fashion-mnist when apt can run as root
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
	    || echo "warning: could not install dataset-fashion-mnist"; \
	else echo "note: Fashion-MNIST needs 'sudo apt-get install dataset-fashion-mnist'"; fi

postgres:  ## PostgreSQL server binaries for the team-server test (apt, when run as root)
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null \
	    || echo "warning: could not install postgresql"; \
	else echo "note: the team-server test needs 'sudo apt-get install postgresql'"; fi

setup: $(STAMP) fashion-mnist  ## create .venv, install the package, dev extras and Fashion-MNIST

# make test's pytest-xdist workers (auto: one per core); a worker takes whole test files, so a
# file's cached fixtures (composed profiles, a trained run) are built once. TEST_JOBS=0: one process
TEST_JOBS ?= auto

test: setup  ## the fast test suite (no network, about 2 minutes on 2 cores)
	$(BIN)/pytest -q -m "not slow" -n $(TEST_JOBS) --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-slow: setup postgres  ## the long tests (CI runs them too)
	$(BIN)/pytest -q -m slow; rc=$$?; if [ $$rc -eq 5 ]; then echo "no slow tests collected"; exit 0; fi; exit $$rc

test-all: test test-slow  ## both suites

mutants: setup  ## apply each named bug of tools/mutants.py to a copy; fail if its killing tests still pass (~5 min)
	$(BIN)/python tools/mutants.py $(MUTANTS_ARGS)

train: setup  ## one run into the MLflow store, e.g. make train ARGS="pruner=pmp sparsity=0.9"
	$(BIN)/repro-train $(ARGS)

# reproduce-table's launcher: JOBS jobs side by side (default: one per usable core; each job takes
# cores/JOBS threads, repro/threads.py). JOBS=1 runs them one by one; a GPU node: LAUNCHER=hydra/launcher=gpu_node
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
LAUNCHER ?= hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS)

# Between the sweep and the report, every finished run of PROFILE is timed on the CPU (dense vs CSR
# kernels), one run after another in one process, and the figures logged to the run: the report's
# latency columns and deploy plot. Runs timed before are skipped. LATENCY=0 leaves it out;
# LATENCY_ARGS="--threads 1 --repeats 31 --force" changes how it times (repro-export --help).
LATENCY ?= 1
LATENCY_ARGS ?=

reproduce-table: setup  ## the sweep of PROFILE (conf/profile/) into the MLflow store, its CPU latency per run (LATENCY=0: not), then its report into results/PROFILE/ (JOBS side by side; default one per core)
	$(BIN)/repro-train -m +profile=$(PROFILE) $(LAUNCHER) $(ARGS); rc=$$?; \
	  if [ "$(LATENCY)" != 0 ]; then $(BIN)/repro-export --profile $(PROFILE) --latency --log $(LATENCY_ARGS) || exit $$?; fi; \
	  $(BIN)/repro-report --profile $(PROFILE) $(REPORT_ARGS) || exit $$?; exit $$rc

latency: setup  ## CPU latency of PROFILE's finished runs, dense vs CSR, logged to each run (LATENCY_ARGS="--force ...")
	$(BIN)/repro-export --profile $(PROFILE) --latency --log $(LATENCY_ARGS)

report: setup  ## PROFILE's runs from the MLflow store -> results/PROFILE/ (REPORT_ARGS="--tolerance 0.5 ...")
	$(BIN)/repro-report --profile $(PROFILE) $(REPORT_ARGS)

ui: setup  ## the MLflow UI over the MLflow store on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --host 127.0.0.1 --port 5000

bench: setup  ## interleaved speed benchmark vs peers into results/bench/ (BENCH_ARGS="--quick", "--device cuda")
	$(BIN)/python tools/bench.py $(BENCH_ARGS)

# The device has no .venv (python3 there holds torch); DRY=1 runs here and needs the venv.
gpu-check: $(if $(DRY),setup)  ## the GPU check, tools/gpu_check.py (DRY=1: on the CPU at tiny sizes, ~1 min; GPU_ARGS="--fresh ...")
	$$(test -x $(BIN)/python && echo $(BIN)/python || echo python3) tools/gpu_check.py $(if $(DRY),--dry) $(GPU_ARGS)

gpu-pack: setup  ## wheels (hydra-core, omegaconf, antlr4) + the CIFAR-10 JPEG copy into .gpu-carry/; prints size and carry list
	$(BIN)/python tools/gpu_check.py --pack

lint: setup  ## ruff
	$(BIN)/ruff check repro tests

clean:  ## remove caches (keeps runs and the venv)
	rm -rf .pytest_cache .ruff_cache
