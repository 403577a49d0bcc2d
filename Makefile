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
# playwright-core drives the try-out page in serving's tests (dev only).
PAGE_TEST := serving/tests/page
DATA := $(CURDIR)/data
DEMO_DATASET := $(DATA)/fashion-mnist
SEMICLASS := target/release/semiclass
# One run folder per `make demo`, so that a second demo never meets the first.
DEMO_RUN := demo-$(shell date -u +%Y%m%d-%H%M%S)
DEMO_LARGE_BEST := $(CURDIR)/runs/$(DEMO_RUN)/large/checkpoints/best.safetensors
DEMO_SMALL_BEST := $(CURDIR)/runs/$(DEMO_RUN)/small/checkpoints/best.safetensors
DEMO_PACKAGES := $(CURDIR)/runs/$(DEMO_RUN)/packages
DEMO_IMAGE := $(DEMO_DATASET)/images/test/00000.png
VENDOR := $(DATA)/vendor

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
	@$(MAKE) --no-print-directory $(PAGE_TEST)/node_modules/.installed

$(PAGE_TEST)/node_modules/.installed: $(PAGE_TEST)/package-lock.json
	npm ci --prefix $(PAGE_TEST) --no-audit --no-fund --silent
	touch $@

demo: setup
	@# The demo plays the vendor too: its license key (made once, kept in
	@# data/vendor) is what the SDK built here trusts.
	@# (Built first only for that: a second build with the keyring follows.)
	test -f $(VENDOR)/vendor.key || { cargo build --release -p semiclass-license-issuer && scripts/vendor-key.sh $(VENDOR); }
	SEMICLASS_LICENSE_KEYRING=$(VENDOR)/keyring.json cargo build --release \
		-p semiclass-trainer -p semiclass-sdk -p semiclass-license-issuer -p semiclass-serve
	$(SEMICLASS) demo-data fashion-mnist $(DEMO_DATASET) --labeled-frac 0.1 --seed 0
	$(SEMICLASS) check $(DEMO_DATASET) --max-shown 5
	@# Both models, CPU-sized so that training takes minutes on 2 cores: the
	@# large one resnet18 at 32 px (3 supervised + 5 FixMatch epochs over the
	@# 10% labels), the small one lcnet_050 at 32 px distilled from it
	@# (4 offline epochs over all 55,000 train images + 1 fine-tune epoch).
	time $(SEMICLASS) train --mode joint --data $(DEMO_DATASET) -o run.dir=$(CURDIR)/runs -o run.name=$(DEMO_RUN) \
		-o large.model=resnet18 -o large.input_size=32 -o large.epochs=3 -o large.ssl.epochs=5 \
		-o small.model=lcnet_050 -o small.input_size=32 -o small.epochs=4
	@# test.txt never picked a checkpoint: these are the honest accuracies. The
	@# nicknames then work wherever a checkpoint goes (@demo-large, @demo-small).
	$(SEMICLASS) eval $(DEMO_LARGE_BEST) --data $(DEMO_DATASET) --split test
	$(SEMICLASS) eval $(DEMO_SMALL_BEST) --data $(DEMO_DATASET) --split test
	$(SEMICLASS) mark $(DEMO_LARGE_BEST) demo-large --note "make demo: large model"
	$(SEMICLASS) mark $(DEMO_SMALL_BEST) demo-small --note "make demo: small model"
	@# Both as CPU packages (ONNX + ONNX Runtime + the offline SDK).
	$(SEMICLASS) export @demo-small --target cpu-x86_64 --out $(DEMO_PACKAGES)
	$(SEMICLASS) export @demo-large --target cpu-x86_64 --out $(DEMO_PACKAGES)
	@# The small one bought and activated offline, then asked about a test image.
	scripts/sdk-demo.sh $(DEMO_PACKAGES)/lcnet_050-cpu-x86_64.zip $(VENDOR) $(DEMO_IMAGE)
	@# Both served over HTTP with an access token; one prediction call.
	scripts/serve-demo.sh $(DEMO_IMAGE) $(DEMO_PACKAGES)/lcnet_050-cpu-x86_64.zip $(DEMO_PACKAGES)/resnet18-cpu-x86_64.zip

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
