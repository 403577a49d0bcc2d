#!/usr/bin/env bash
# Finds a missing piece of the environment before minutes go into a dataset
# or a training, and names the command that fixes it. make runs it with the
# venv's variables set (LD_LIBRARY_PATH, ORT_DYLIB_PATH).
# Usage: scripts/preflight.sh BIN_DIR    (target/release or target/debug)
set -uo pipefail
bin=${1:-target/release}

fail() {
    echo "preflight: $1" >&2
    echo "  fix: $2" >&2
    exit 1
}

[ -x .venv/bin/python ] || fail "no Python venv in .venv" "make setup"
site=$(ls -d .venv/lib/python3*/site-packages 2>/dev/null | head -n 1)
[ -f "$site/torch/lib/libtorch_cpu.so" ] ||
    fail "no libtorch in .venv (torch/lib/libtorch_cpu.so)" \
        "rm .venv/.installed && make setup   (reinstalls torch==2.13.0 from requirements-dev.txt)"
[ -n "${ORT_DYLIB_PATH:-}" ] && [ -f "$ORT_DYLIB_PATH" ] ||
    fail "no ONNX Runtime library (ORT_DYLIB_PATH='${ORT_DYLIB_PATH:-}'): export and serving need it" \
        "rm .venv/.installed && make setup   (reinstalls onnxruntime from requirements-dev.txt)"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    fail "Debian's dataset-fashion-mnist is not installed" "sudo apt-get install -y dataset-fashion-mnist"
# The trainer links libtorch: one that does not load shows here, not after the
# dataset is built.
if ! out=$("$bin/semiclass" --version 2>&1); then
    fail "$bin/semiclass does not start: $(echo "$out" | head -n 1)" \
        "run it through make (which sets LD_LIBRARY_PATH to .venv's torch/lib), or rebuild: make setup && cargo build --release -p semiclass-trainer"
fi
exit 0
