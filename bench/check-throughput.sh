#!/usr/bin/env bash
# Dataset check throughput: `semiclass check` (every list line, every image
# decoded, hashed and measured) side by side with a Pillow decode loop over
# the same files, both with 2 workers, on Fashion-MNIST and on 640x480 JPEGs.
# Run through `make bench` (which builds and sets up the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
SEMICLASS=target/release/semiclass
FMNIST=data/fashion-mnist
PHOTOS=data/bench-photos
[ -d "$FMNIST" ] || $SEMICLASS demo-data fashion-mnist "$FMNIST"
python bench/make_photo_dataset.py "$PHOTOS" 2000

now() { date +%s.%N; }
echo "dataset          images  semiclass img/s  pillow img/s  ratio"
for dataset in "$FMNIST" "$PHOTOS"; do
    out=$(mktemp -d)
    images=$(python - "$dataset" <<'PY'
import sys; sys.path.insert(0, "bench"); from check_baseline import listed; from pathlib import Path
print(len(listed(Path(sys.argv[1]))))
PY
)
    # Warm the page cache so both sides read from memory.
    cat "$dataset"/images/* "$dataset"/images/*/* >/dev/null 2>&1 || true
    best_ours=0; best_pil=0
    for round in 1 2 3; do
        start=$(now); RAYON_NUM_THREADS=2 $SEMICLASS check "$dataset" --out "$out" >/dev/null; end=$(now)
        ours=$(python -c "print($images / ($end - $start))")
        read -r n secs < <(python bench/check_baseline.py "$dataset" 2)
        pil=$(python -c "print($n / $secs)")
        best_ours=$(python -c "print(max($best_ours, $ours))")
        best_pil=$(python -c "print(max($best_pil, $pil))")
    done
    printf "%-16s %6d  %15.0f  %12.0f  %5.2f\n" "$(basename "$dataset")" "$images" "$best_ours" "$best_pil" \
        "$(python -c "print($best_ours / $best_pil)")"
    rm -rf "$out"
done
