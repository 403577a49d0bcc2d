#!/usr/bin/env bash
# Training-step throughput (forward + backward + SGD step, batch 64, 2 CPU
# threads): our tch model vs PyTorch eager on the same timm model, run
# alternately in the same session so machine noise hits both alike.
# Run through `make bench` (builds release binaries, sets up the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
echo "model        input  batch  tch img/s  pytorch img/s  ratio (tch/pytorch)"
for spec in "resnet18 32 64 20" "lcnet_100 224 64 5"; do
    read -r model size batch steps <<<"$spec"
    best_tch=0; best_py=0
    for _ in $(seq "$ROUNDS"); do
        t=$(target/release/train-step "$model" "$size" "$batch" "$steps" 2)
        p=$(python bench/train_step.py "$model" "$size" "$batch" "$steps" 2)
        best_tch=$(python -c "print(max($best_tch, $t))")
        best_py=$(python -c "print(max($best_py, $p))")
    done
    printf "%-12s %5d  %5d  %9.1f  %13.1f  %5.2f\n" "$model" "$size" "$batch" "$best_tch" "$best_py" \
        "$(python -c "print($best_tch / $best_py)")"
done
