#!/usr/bin/env bash
# scripts/gpu-check.sh: the CUDA package on a real GPU, in one call of at most
# 10 minutes: a few training steps on CUDA, the cuda-x86_64 package exported,
# served, and its latency and throughput recorded under $OUT.
#
#   scripts/gpu-check.sh --prepare   here (dev machine): builds what travels
#                                    into .gpu-carry/ (git-ignored, < 64 MiB)
#   scripts/gpu-check.sh             on the GPU machine (the device tool's
#                                    `run`, carry [".gpu-carry"])
#   scripts/gpu-check.sh --dry-run   here, on the CPU: every step the same,
#                                    the CUDA package served with
#                                    --allow-cpu-fallback (no GPU here)
#
# What it assumes about the GPU machine (/work/.library/device/KINDS.md,
# 2026-11): x86-64, no network, a python3 with torch 2.11 (cu130), timm,
# safetensors and the nvidia-* CUDA 13 / cuDNN 9 wheels; no cargo (not in its
# list: nothing is built there). Only the working tree and 64 MiB of carried
# paths travel, hence:
# - Training runs on that machine's own PyTorch (scripts/gpu_check.py), not
#   on our trainer: the `semiclass` binary links the dev venv's libtorch 2.13
#   (GBs, cannot travel; torch 2.11 there is another ABI). It trains the
#   lcnet_050 of a template checkpoint written here by the exporter's test
#   helpers (same timm names, our checkpoint metadata), so what it saves is a
#   checkpoint our exporter reads.
# - Export and serving use binaries built here that need no libtorch: the
#   exporter's `gpu_check_package` example and `semiclass-serve` (ONNX
#   Runtime is loaded at run time), stripped, in .gpu-carry/bin.
# - The CUDA build of ONNX Runtime cannot travel: the onnxruntime-gpu wheel
#   is 256 MB (its CUDA provider alone 284 MB unpacked), over the 64 MiB
#   limit. The script takes it from $SEMICLASS_ORT_CUDA_DIR, else from that
#   machine's python3 `onnxruntime` if it is the GPU build, else stops after
#   training and says so (in $OUT/summary.txt). The packages we build need
#   onnxruntime-gpu 1.31.1 or a build of the same CUDA major (13).
# - CUDA 13 and cuDNN 9 come from that python's nvidia-* wheels (torch's
#   own), put on LD_LIBRARY_PATH for the server.
set -euo pipefail
cd "$(dirname "$0")/.."

CARRY=.gpu-carry
MODE=${1:-gpu}
STEPS=${GPU_CHECK_STEPS:-30}
BENCH_SECONDS=${GPU_CHECK_SECONDS:-20}
say() { echo "gpu-check: $*" | tee -a "$OUT/summary.txt"; }

# GPU_CHECK_PROFILE=debug: a quicker build for --dry-run (too big to carry).
prepare() {
    local exclude profile=${GPU_CHECK_PROFILE:-release}
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.gpu-carry/' "$exclude" 2>/dev/null || echo '/.gpu-carry/' >>"$exclude"
    mkdir -p "$CARRY/bin"
    local flag=--release; [[ $profile == debug ]] && flag=
    nice -n 10 cargo build $flag -p semiclass-serve
    nice -n 10 cargo build $flag -p semiclass-exporter --features testing --example gpu_check_package
    strip -o "$CARRY/bin/semiclass-serve" "target/$profile/semiclass-serve"
    strip -o "$CARRY/bin/gpu_check_package" "target/$profile/examples/gpu_check_package"
    "$CARRY/bin/gpu_check_package" template "$PWD/$CARRY/template.safetensors"
    du -sh "$CARRY"
}

# The capi folder of a CUDA build of ONNX Runtime, or nothing.
cuda_runtime() {
    local dir=${SEMICLASS_ORT_CUDA_DIR:-}
    if [[ -z $dir ]]; then
        dir=$(python3 -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' 2>/dev/null || true)
    fi
    [[ -n $dir && -f $dir/libonnxruntime_providers_cuda.so ]] && echo "$dir"
    return 0
}

# The lib folders of python3's nvidia-* wheels (CUDA 13, cuDNN 9).
nvidia_libs() {
    python3 - <<'PY' 2>/dev/null || true
import glob, os, site
dirs = [d for s in site.getsitepackages() for d in glob.glob(os.path.join(s, "nvidia", "**", "lib"), recursive=True)]
print(":".join(sorted(set(dirs))))
PY
}

facts() {
    { nvidia-smi -L 2>&1 || echo "no nvidia-smi"; python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1; } | tee "$OUT/facts.txt"
}

# Starts the server on the package; waits for it to listen; sets URL, PID.
serve() {
    local package=$1 extra=$2
    "$BIN/semiclass-serve" --tokens "$WORK/tokens.json" token create --name gpu-check >"$WORK/token"
    "$BIN/semiclass-serve" --tokens "$WORK/tokens.json" serve --package "$package" \
        --listen 127.0.0.1:0 $extra 2>"$OUT/serve.log" &
    PID=$!
    for _ in $(seq 120); do
        URL=$(grep -o 'listening on http://[0-9.:]*' "$OUT/serve.log" | sed 's/listening on //' || true)
        [[ -n $URL ]] && return 0
        kill -0 "$PID" 2>/dev/null || { say "the server stopped: $(tail -n 3 "$OUT/serve.log")"; exit 1; }
        sleep 0.5
    done
    say "the server did not listen within 60 s"; exit 1
}

main() {
    local device=cuda extra=""
    BIN=$CARRY/bin
    if [[ $MODE == --dry-run ]]; then
        device=cpu extra=--allow-cpu-fallback
        OUT=${OUT:-$PWD/target/gpu-check-out}
    fi
    OUT=${OUT:?OUT: the folder for results (the device tool sets it)}
    mkdir -p "$OUT" && : >"$OUT/summary.txt"
    WORK=$(mktemp -d)
    trap '[[ -n ${PID:-} ]] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
    [[ -x $BIN/semiclass-serve && -f $CARRY/template.safetensors ]] \
        || { say "no $CARRY: run scripts/gpu-check.sh --prepare on the dev machine and carry $CARRY"; exit 2; }
    facts
    say "training $STEPS steps on $device"
    timeout 180 python3 scripts/gpu_check.py train "$CARRY/template.safetensors" "$WORK/ckpt.safetensors" "$STEPS" "$device" | tee "$OUT/train.json"
    local capi
    capi=$(cuda_runtime)
    if [[ -z $capi ]]; then
        say "no CUDA build of ONNX Runtime on this machine (the 256 MB onnxruntime-gpu wheel cannot be carried): training checked, export and serving not run"
        exit 3
    fi
    say "exporting the cuda-x86_64 package with $capi"
    timeout 180 "$BIN/gpu_check_package" export "$WORK/ckpt.safetensors" cuda-x86_64 "$capi" "$WORK/pkg" | tee -a "$OUT/summary.txt"
    python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(json.dumps(m["runtime"]))' "$WORK/pkg/unpacked/manifest.json" >"$OUT/runtime.json"
    export LD_LIBRARY_PATH=$(nvidia_libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    unset ORT_DYLIB_PATH
    serve "$WORK/pkg/unpacked" "$extra"
    if [[ $device == cuda ]] && ! grep -q 'on the GPU (CUDA execution provider)' "$OUT/serve.log"; then
        say "the package did not run on the GPU: $(tail -n 3 "$OUT/serve.log")"; exit 1
    fi
    local id
    id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["package_id"])' "$WORK/pkg/unpacked/manifest.json")
    say "serving $id at $URL; measuring for $BENCH_SECONDS s"
    timeout 120 python3 scripts/gpu_check.py bench "$URL" "$(cat "$WORK/token")" "$id" "$BENCH_SECONDS" "$OUT/bench.json" | tee -a "$OUT/summary.txt"
    say "done ($device)"
}

case $MODE in
    --prepare) prepare ;;
    gpu | --dry-run) main ;;
    *) echo "usage: scripts/gpu-check.sh [--prepare | --dry-run]" >&2; exit 2 ;;
esac
