#!/usr/bin/env bash
# Serving throughput and latency at 224 px on CPU, the same work (a
# JPEG decoded, preprocessed, classified, top 5) side by side in one run at
# concurrency 1, 4, 16 and 64, with the same ONNX Runtime threads on every side:
# (a) a Rust loop linking the crates (no HTTP), (b) the FastAPI + uvicorn server
# a Python user would write (bench/python_server.py, in a bench-only venv made
# here with pip if absent: .venv-bench, git-ignored), (c) semiclass-serve; then
# semiclass-serve at 4x its concurrency cap, which must answer only 200/429/503.
# Run through `make bench` (which sets up the venv and ORT_DYLIB_PATH), or alone
# after `source`-ing the same.
# SECONDS_PER=N measures each setting for N seconds (default 6), ROUNDS=N
# times alternately (default 3; the best round of each is reported);
# PY_WORKERS=1,2 the uvicorn workers tried; MODELS="lcnet_100 resnet50" the
# timm models measured, one after the other (default: the five of the latency
# table in BENCHMARKS.md, lcnet_100 through resnet50, then `no_inference`).
# `no_inference` is a graph that costs next to nothing (the image's mean
# colour projected to 1000 logits): with it a side's CPU per request is its
# work outside inference (HTTP, decode, preprocess, top k) measured over
# thousands of requests, where with a real model it is the difference of two
# large, noisy totals (resnet50: 1.7 ms of about 100 in one run, 15.7 in
# another).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=target/bench-serve
THREADS=${THREADS:-$(nproc)}
mkdir -p "$WORK"
cargo build --release -q -p semiclass-serve --bin semiclass-serve --example serve_bench

MODELS=${MODELS:-lcnet_100 mobilenetv3_small_100 hgnetv2_b0 hgnetv2_b4 resnet50 no_inference}

# Each timm model with random weights (no download) exported once; a dev
# tool only: the product never runs Python.
for arch in $MODELS; do
    [ -f "$WORK/$arch.onnx" ] || python - "$WORK" "$arch" <<'PY'
import sys, warnings, torch, timm
from pathlib import Path
warnings.filterwarnings("ignore", category=DeprecationWarning)
work, arch = Path(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
if arch == "no_inference":
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(3, 1000)).eval()
else:
    model = timm.create_model(arch, pretrained=False, num_classes=1000).eval()
x = torch.randn(1, 3, 224, 224)
partial = work / f"{arch}.partial.onnx"
torch.onnx.export(model, x, str(partial), input_names=["input"],
                  output_names=["logits"], opset_version=17, dynamo=False,
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
partial.rename(work / f"{arch}.onnx")
PY
done
# A photo-sized JPEG (320x240, smooth gradients and noise) as every request's body.
[ -f "$WORK/photo.jpg" ] || python - "$WORK/photo.jpg" <<'PY'
import sys, numpy as np
from PIL import Image
rng = np.random.default_rng(0)
y, x = np.mgrid[0:240, 0:320]
rgb = np.stack([x * 0.8, y * 1.0, (x + y) * 0.4], -1) + rng.normal(0, 12, (240, 320, 3))
Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(sys.argv[1], quality=90)
PY
# Side (b)'s interpreter: a venv of its own, never the project's.
PY_VENV=.venv-bench
if [ ! -x "$PY_VENV/bin/uvicorn" ]; then
    python3 -m venv "$PY_VENV"
    "$PY_VENV/bin/pip" install -q fastapi "uvicorn[standard]" pillow numpy onnxruntime==1.32.0
fi
for arch in $MODELS; do
    echo "== $arch"
    mkdir -p "$WORK/$arch"
    target/release/examples/serve_bench --onnx "$WORK/$arch.onnx" --arch "$arch" --image "$WORK/photo.jpg" \
        --server target/release/semiclass-serve --work "$WORK/$arch" --threads "$THREADS" --sessions "${SESSIONS:-$THREADS}" \
        --python "$PY_VENV/bin/python" --python-workers "${PY_WORKERS:-1,2}" \
        --seconds "${SECONDS_PER:-6}" --rounds "${ROUNDS:-3}"
done
