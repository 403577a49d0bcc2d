#!/usr/bin/env bash
# Training-step throughput (forward + backward + SGD step, batch 64, 2 CPU
# threads): our tch model vs PyTorch eager on the same timm model, run
# alternately in the same session so machine noise hits both alike; best of
# ROUNDS. PyTorch runs twice: as users run it, and with the glibc malloc
# settings our trainer applies at startup (trainer/src/alloc.rs), so the
# ratio separates the allocator from the rest. Ours also runs with
# `every-tap`: convolutions computing the kernel taps that meet only padding
# (trainer/src/nn/padding_taps.rs), the work a small-image model's last
# stages do for nothing.
# Run through `make bench` (builds release binaries, sets up the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
TUNED=(env MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1099511627776 MALLOC_TOP_PAD_=67108864)
max() { python -c "print(max($1, $2))"; }
echo "model      input  tch img/s  every-tap img/s  ratio  pytorch img/s  ratio  pytorch+malloc img/s  ratio"
for spec in "resnet18 32 64 20" "lcnet_100 224 64 10"; do
    read -r model size batch steps <<<"$spec"
    ours=0; every=0; plain=0; tuned=0
    for _ in $(seq "$ROUNDS"); do
        ours=$(max "$ours" "$(target/release/train-step "$model" "$size" "$batch" "$steps" 2 imagenet)")
        every=$(max "$every" "$(target/release/train-step "$model" "$size" "$batch" "$steps" 2 imagenet every-tap)")
        plain=$(max "$plain" "$(python bench/train_step.py "$model" "$size" "$batch" "$steps" 2)")
        tuned=$(max "$tuned" "$("${TUNED[@]}" python bench/train_step.py "$model" "$size" "$batch" "$steps" 2)")
    done
    python - "$model" "$size" "$ours" "$every" "$plain" "$tuned" <<'PY'
import sys
model, size, ours, every, plain, tuned = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])
print(f"{model:<10} {size:5d}  {ours:9.1f}  {every:15.1f}  {ours / every:5.2f}  {plain:13.1f}  {ours / plain:5.2f}  {tuned:20.1f}  {ours / tuned:5.2f}")
PY
done
