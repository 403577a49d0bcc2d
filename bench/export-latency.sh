#!/usr/bin/env bash
# Single-image latency of exported packages (decode + preprocess + inference,
# ONNX Runtime on the CPU with 2 intra-op threads, batch 1), at 224 px with
# random weights: our path (bench/src/bin/export-latency.rs: the shared
# preprocessing crate + ort, as the SDK and server run it) side by side with
# Python onnxruntime + Pillow (bench/export_latency.py) on the same 640x480
# JPEGs, alternating round by round so machine noise hits both alike; the
# best median of ROUNDS per side. The product column is the source product's
# CPU figure (8 threads, Xeon Gold 5117).
# Run through `make bench` (builds release binaries, sets up the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
IMAGES=${IMAGES:-30}
SEMICLASS=target/release/semiclass
PHOTOS=data/bench-photos
WORK=target/bench-export
python bench/make_photo_dataset.py "$PHOTOS" 2000
mapfile -t images < <(find "$PHOTOS/images" -name '*.jpg' | sort | head -n "$IMAGES")
cat "${images[@]}" >/dev/null # page cache, for both sides alike
mkdir -p "$WORK"
min() { python -c "print(min(float(\"$1\"), $2))"; }
# INT8_ONLY=1 skips this first table (fp32 against Python).
echo "model                  ours ms  python ms  ours/python  product ms  ours/product"
[ -n "${INT8_ONLY:-}" ] || for spec in "lcnet_100 3.39" "mobilenetv3_small_100 3.65" "hgnetv2_b0 6.41" "resnet50 50.90" "hgnetv2_b4 38.10"; do
    read -r model product <<<"$spec"
    target/release/random-checkpoint "$model" 224 1000 "$WORK/$model.safetensors"
    $SEMICLASS export "$WORK/$model.safetensors" --target cpu-x86_64 --out "$WORK" --force >/dev/null
    package="$WORK/$model-cpu-x86_64.zip"
    python -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('model/model.onnx', sys.argv[2])" \
        "$package" "$WORK/$model"
    ours=inf; theirs=inf
    for _ in $(seq "$ROUNDS"); do
        read -r median _ < <(target/release/export-latency "$package" 1 "${images[@]}")
        ours=$(min "$ours" "$median")
        read -r median _ < <(python bench/export_latency.py "$WORK/$model/model/model.onnx" 1 "${images[@]}")
        theirs=$(min "$theirs" "$median")
    done
    python - "$model" "$ours" "$theirs" "$product" <<'PY'
import sys
model, ours, theirs, product = sys.argv[1], *map(float, sys.argv[2:])
print(f"{model:<22} {ours:7.2f}  {theirs:9.2f}  {ours / theirs:11.2f}  {product:10.2f}  {ours / product:12.2f}")
PY
done

# int8 beside fp32 (issue 17): one random checkpoint per model with the
# photo dataset's 4 classes, exported twice (fp32; int8 calibrated on 100
# train/unlabeled photos and evaluated on val.txt, --force because random
# weights have no accuracy to keep), both packages timed by the same
# program, alternating round by round.
echo
echo "model                  fp32 ms  int8 ms  int8/fp32  product ms  int8/product"
for spec in "resnet50 50.90" "hgnetv2_b4 38.10"; do
    read -r model product <<<"$spec"
    dir="$WORK/int8-$model"
    mkdir -p "$dir"
    target/release/random-checkpoint "$model" 224 4 "$dir/$model.safetensors"
    for precision in fp32 int8; do
        mkdir -p "$dir/$precision"
        $SEMICLASS export "$dir/$model.safetensors" --target cpu-x86_64 --without-sdk \
            --out "$dir/$precision" --force --precision "$precision" \
            --data "$PHOTOS" --calibration-images 100 >"$dir/$precision.log"
    done
    fp32=inf; int8=inf
    for _ in $(seq "$ROUNDS"); do
        read -r median _ < <(target/release/export-latency "$dir/fp32/$model-cpu-x86_64.zip" 1 "${images[@]}")
        fp32=$(min "$fp32" "$median")
        read -r median _ < <(target/release/export-latency "$dir/int8/$model-cpu-x86_64.zip" 1 "${images[@]}")
        int8=$(min "$int8" "$median")
    done
    python - "$model" "$fp32" "$int8" "$product" <<'PY'
import sys
model, fp32, int8, product = sys.argv[1], *map(float, sys.argv[2:])
print(f"{model:<22} {fp32:7.2f}  {int8:7.2f}  {int8 / fp32:9.2f}  {product:10.2f}  {int8 / product:12.2f}")
PY
done
