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

.PHONY: help setup test test-slow test-all train reproduce-table report ui lint bench fashion-mnist postgres clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

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

test: setup  ## the fast test suite (no network, a few minutes)
	$(BIN)/pytest -q -m "not slow"; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-slow: setup postgres  ## the long tests (CI runs them too)
	$(BIN)/pytest -q -m slow; rc=$$?; if [ $$rc -eq 5 ]; then echo "no slow tests collected"; exit 0; fi; exit $$rc

test-all: test test-slow  ## both suites

train: setup  ## one run, e.g. make train ARGS="pruner=pmp sparsity=0.9"
	$(BIN)/repro-train $(ARGS)

reproduce-table: setup  ## the sweep of PROFILE (quick|mnist|paper), then the report
	$(BIN)/repro-train -m +profile=$(PROFILE) $(ARGS); rc=$$?; \
	  $(BIN)/repro-report --profile $(PROFILE) $(REPORT_ARGS) || exit $$?; exit $$rc

report: setup  ## the report of PROFILE from MLflow into results/PROFILE/ (REPORT_ARGS="--tolerance 0.5 ...")
	$(BIN)/repro-report --profile $(PROFILE) $(REPORT_ARGS)

ui: setup  ## the MLflow UI on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --host 127.0.0.1 --port 5000

bench: setup  ## interleaved speed benchmark vs peers into results/bench/ (BENCH_ARGS="--quick", "--device cuda")
	$(BIN)/python -m repro.bench $(BENCH_ARGS)

lint: setup  ## ruff
	$(BIN)/ruff check repro tests

clean:  ## remove caches (keeps runs and the venv)
	rm -rf .pytest_cache .ruff_cache
