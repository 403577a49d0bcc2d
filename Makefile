# semiclass: `make demo` runs the main job end to end on real data,
# `make test` runs the test suite. Both set up everything they need.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
VENV_STAMP := $(VENV)/.installed
PYTHON := $(VENV)/bin/python
SITE = $(firstword $(wildcard $(VENV)/lib/python3*/site-packages))

# tch builds against the libtorch inside the pip wheel; ort loads the ONNX
# Runtime library of the onnxruntime wheel at run time (load-dynamic).
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
INHERITED_LD_LIBRARY_PATH := $(LD_LIBRARY_PATH)
export LD_LIBRARY_PATH = $(SITE)/torch/lib$(if $(INHERITED_LD_LIBRARY_PATH),:$(INHERITED_LD_LIBRARY_PATH))
export ORT_DYLIB_PATH = $(firstword $(wildcard $(SITE)/onnxruntime/capi/libonnxruntime.so.*))

MODEL_FIXTURES := $(CURDIR)/target/model-fixtures
DATA := $(CURDIR)/data
DEMO_DATASET := $(DATA)/fashion-mnist
SEMICLASS := target/release/semiclass

.PHONY: help setup demo test lint bench clean-data

help:
	@echo "make demo    set up, then run the main job end to end on Fashion-MNIST"
	@echo "make test    set up, then run the test suite"
	@echo "make lint    cargo fmt --check and clippy -D warnings"
	@echo "make bench   run the benchmarks under bench/"

$(VENV_STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -r requirements-dev.txt
	touch $@

setup: $(VENV_STAMP)
	@scripts/system-deps.sh

demo: setup
	cargo build --release -p semiclass-trainer
	$(SEMICLASS) demo-data fashion-mnist $(DEMO_DATASET) --labeled-frac 0.1 --seed 0
	$(SEMICLASS) check $(DEMO_DATASET) --max-shown 5
	@# The large model, CPU-sized: resnet18 at 32 px, 2 supervised + 2 FixMatch epochs.
	$(SEMICLASS) train --mode large --data $(DEMO_DATASET) -o run.dir=$(CURDIR)/runs \
		-o large.model=resnet18 -o large.input_size=32 -o large.epochs=2 -o large.ssl.epochs=2
	@# The newest run's best checkpoint as a CPU package (ONNX + ONNX Runtime).
	$(SEMICLASS) export "$$(ls -td $(CURDIR)/runs/*/ | head -n 1)checkpoints/best.safetensors" \
		--target cpu-x86_64 --out $(CURDIR)/packages --force

# timm parity fixtures (random weights, inputs, timm's logits), remade when
# the script changes.
$(MODEL_FIXTURES)/cases.json: tests/fixtures/make_models.py $(VENV_STAMP)
	$(PYTHON) tests/fixtures/make_models.py $(MODEL_FIXTURES)

test: setup $(MODEL_FIXTURES)/cases.json
	cargo build --workspace --bins
	@# nextest ships with this machine kind; plain cargo test where it does not.
	if cargo nextest --version >/dev/null 2>&1; then cargo nextest run --workspace --no-fail-fast; \
	else cargo test --workspace --no-fail-fast; fi

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

bench: setup
	cargo build --release --workspace --bins
	bench/run-all.sh
