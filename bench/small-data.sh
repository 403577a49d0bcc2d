#!/usr/bin/env bash
# Defaults on a small dataset (issue 20's benchmark): scikit-learn's
# handwritten digits as the first collection a user brings, 10 classes,
# 130 labeled + 1,165 unlabeled 32x32 JPEGs, 143 val, 359 test
# (bench/make_small_dataset.py), trained with NO overrides:
#   semiclass train --mode joint --data data/digits-small
# Prints the run's own baseline (1-NN on 8x8 thumbnails of the labeled
# images), scikit-learn's 1-NN on the raw 8x8 pixels, the large and small
# models' test top-1, and the wall-clock time of the training.
# Goals: large above the 1-NN, small within 2 points of large, <= 300 s.
# SEEDS: dataset splits to run (default "0"). OVERRIDES: extra `-o k=v`
# settings for an arm to compare with the defaults (default none), e.g.
# OVERRIDES="-o data.flip=always".
set -euo pipefail
cd "$(dirname "$0")/.."
SEMICLASS=target/release/semiclass
SEEDS=${SEEDS:-0}
OVERRIDES=${OVERRIDES:-}
RUNS=${RUNS:-$(mktemp -d)}
mkdir -p "$RUNS"
# scikit-learn (for its bundled digits and the reference 1-NN) lives in a
# bench-only venv, made once from PyPI.
BENCH_VENV=.venv-bench
[ -x "$BENCH_VENV/bin/python" ] || python3 -m venv "$BENCH_VENV"
"$BENCH_VENV/bin/python" -c 'import sklearn, PIL' 2>/dev/null ||
    "$BENCH_VENV/bin/pip" install -q scikit-learn pillow numpy

printf '%-5s %9s %9s %9s %9s %8s\n' seed "1-NN raw" baseline large small seconds
for seed in $SEEDS; do
    data=data/digits-small-$seed
    [ "$seed" = 0 ] && data=data/digits-small
    [ -d "$data" ] || "$BENCH_VENV/bin/python" bench/make_small_dataset.py "$data" --seed "$seed" > "$RUNS/data-$seed.txt"
    reference=$("$BENCH_VENV/bin/python" bench/make_small_dataset.py --baseline-only "$data")
    log=$RUNS/joint-$seed.log
    start=$(date +%s.%N)
    $SEMICLASS train --mode joint --data "$data" -o run.dir="$RUNS" -o run.name="joint-$seed" $OVERRIDES > "$log" 2>&1
    seconds=$(python3 -c "import time; print(f'{time.time() - $start:.0f}')")
    baseline=$(sed -nE 's/^large: baseline: .*test top-1 ([0-9.]+)%.*/\1/p' "$log" | head -n1)
    large=$(sed -nE 's/^large: test.txt top-1 ([0-9.]+)%.*/\1/p' "$log")
    small=$(sed -nE 's/^small: test.txt top-1 ([0-9.]+)%.*/\1/p' "$log")
    printf '%-5s %8s%% %8s%% %8s%% %8s%% %8s\n' "$seed" "$reference" "$baseline" "$large" "$small" "$seconds"
done
echo "logs: $RUNS"
