# semiclass: `make demo` runs the main job end to end on real data,
# `make test` runs the test suite. Both set up everything they need.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
VENV_STAMP := $(VENV)/.installed
PYTHON := $(VENV)/bin/python
# Looked up when a recipe line runs, never when make starts: the make process
# that creates the venv must see it too ($(wildcard) is cached per process, so
# the first `make demo` on a fresh clone once ran without ONNX Runtime).
SITE = $(shell ls -d $(VENV)/lib/python3*/site-packages 2>/dev/null | head -n 1)

# tch builds against the libtorch inside the pip wheel; ort loads the ONNX
# Runtime library of the onnxruntime wheel at run time (load-dynamic).
export PATH := $(VENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1
INHERITED_LD_LIBRARY_PATH := $(LD_LIBRARY_PATH)
export LD_LIBRARY_PATH = $(SITE)/torch/lib$(if $(INHERITED_LD_LIBRARY_PATH),:$(INHERITED_LD_LIBRARY_PATH))
export ORT_DYLIB_PATH = $(shell ls $(SITE)/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n 1)
# The CUDA build of ONNX Runtime for cuda-x86_64 packages: the onnxruntime-gpu
# wheel of requirements-ort-gpu.txt, unpacked by `make ort-gpu` (a wheel is a
# zip: capi/ and the dist-info whose METADATA names its CUDA and cuDNN). Lazy
# like ORT_DYLIB_PATH, and through the shell rather than $(wildcard), whose
# answers make caches: the make process that fetches it must export it too.
ORT_GPU := $(CURDIR)/target/ort-gpu
ORT_GPU_STAMP := $(ORT_GPU)/.unpacked
export SEMICLASS_ORT_CUDA_DIR = $(shell test -f $(ORT_GPU_STAMP) && echo $(ORT_GPU)/wheel/onnxruntime/capi)

MODEL_FIXTURES := $(CURDIR)/target/model-fixtures
# playwright-core drives the try-out page in serving's tests (dev only).
PAGE_TEST := serving/tests/page
# ...and the studio's workflow in the studio's tests.
STUDIO_PAGE_TEST := studio/tests/page
# What the demo runs: the trainer, the SDK, the vendor's license tool, the server.
DEMO_PACKAGES := -p semiclass-trainer -p semiclass-sdk -p semiclass-license-issuer -p semiclass-serve
VENDOR := $(CURDIR)/data/vendor

.PHONY: help setup demo demo-quick demo-build test lint bench ort-gpu

help:
	@echo "make demo        set up, then run the main job end to end on Fashion-MNIST"
	@echo "make demo-quick  the same steps with about a minute of training (not the demo's accuracy)"
	@echo "make test        set up, then run the test suite"
	@echo "make lint        cargo fmt --check and clippy -D warnings"
	@echo "make bench       run the benchmarks under bench/"
	@echo "make ort-gpu     fetch the onnxruntime-gpu wheel for cuda-x86_64 packages (about 250 MB)"

$(VENV_STAMP): requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q -r requirements-dev.txt
	touch $@

# pip download, never install: the GPU build's module is also named
# onnxruntime and would replace the CPU one in the venv. Only what a package
# ships (the libraries) and what names its needs (METADATA) are unpacked.
$(ORT_GPU_STAMP): requirements-ort-gpu.txt $(VENV_STAMP)
	rm -rf $(ORT_GPU) && mkdir -p $(ORT_GPU)/download
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: -r requirements-ort-gpu.txt -d $(ORT_GPU)/download
	cd $(ORT_GPU) && unzip -q -o download/onnxruntime_gpu-*.whl 'onnxruntime/capi/libonnxruntime*' '*.dist-info/METADATA' -d wheel
	rm -rf $(ORT_GPU)/download
	touch $@

ort-gpu: $(ORT_GPU_STAMP)
	@echo "SEMICLASS_ORT_CUDA_DIR=$(ORT_GPU)/wheel/onnxruntime/capi"

setup: $(VENV_STAMP)
	@scripts/system-deps.sh
	@$(MAKE) --no-print-directory $(PAGE_TEST)/node_modules/.installed $(STUDIO_PAGE_TEST)/node_modules/.installed

$(PAGE_TEST)/node_modules/.installed: $(PAGE_TEST)/package-lock.json
	npm ci --prefix $(PAGE_TEST) --no-audit --no-fund --silent
	touch $@

$(STUDIO_PAGE_TEST)/node_modules/.installed: $(STUDIO_PAGE_TEST)/package-lock.json
	npm ci --prefix $(STUDIO_PAGE_TEST) --no-audit --no-fund --silent
	touch $@

# The release binaries of the demo. The demo plays the vendor too: its license
# key (made once, kept in data/vendor) is what the SDK built here trusts, so
# the issuer is built first, alone, to make that key.
demo-build: setup
	test -f $(VENDOR)/vendor.key || { cargo build --release -p semiclass-license-issuer && scripts/vendor-key.sh $(VENDOR); }
	SEMICLASS_LICENSE_KEYRING=$(VENDOR)/keyring.json cargo build --release $(DEMO_PACKAGES)
	scripts/preflight.sh target/release

# Every step is a command you can run yourself: scripts/demo.sh shows them.
demo: demo-build
	scripts/demo.sh full

# The same steps with training cut to about a minute (CI runs it first).
demo-quick: demo-build
	scripts/demo.sh quick

# timm parity fixtures (random weights, inputs, timm's logits), remade when
# the script changes.
$(MODEL_FIXTURES)/cases.json: tests/fixtures/make_models.py $(VENV_STAMP)
	$(PYTHON) tests/fixtures/make_models.py $(MODEL_FIXTURES)

# Pillow's outputs of every RandAugment operation, which the trainer's own
# operations must reproduce (trainer/src/data/augment.rs).
AUGMENT_FIXTURES := $(CURDIR)/target/augment-fixtures
$(AUGMENT_FIXTURES)/cases.json: tests/fixtures/make_augment.py $(VENV_STAMP)
	$(PYTHON) tests/fixtures/make_augment.py $(AUGMENT_FIXTURES)

# `--all-targets` everywhere (lint, build, tests): the same selection resolves
# the same features, so the three share their build-script runs. With
# `--bins` here the host crates (cc, getrandom) got other features, and
# torch-sys compiled its C++ wrapper (minutes) once more.
# The CUDA package's tests (serving, SDK) export one from the real wheel.
test: setup $(MODEL_FIXTURES)/cases.json $(AUGMENT_FIXTURES)/cases.json $(ORT_GPU_STAMP)
	cargo build --workspace --all-targets
	scripts/preflight.sh target/debug
	@# nextest ships with this machine kind; plain cargo test where it does not.
	if cargo nextest --version >/dev/null 2>&1; then cargo nextest run --workspace --no-fail-fast; \
	else cargo test --workspace --no-fail-fast; fi

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

bench: setup
	cargo build --release --workspace --bins
	bench/run-all.sh
