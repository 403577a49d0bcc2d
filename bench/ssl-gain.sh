#!/usr/bin/env bash
# What the unlabeled images are worth, at equal wall-clock budgets: (a)
# supervised on the labels, (b) the large pipeline (warm start + FixMatch),
# (c) supervised on 100% of the labels; Fashion-MNIST at 1% and 10% labels,
# seeds 0,1,2, mean ± std. See bench/gain.py for the protocol.
# BUDGET: seconds of training per arm (default 1800: about 6 hours in all on
# 2 cores); SEEDS, FRACTIONS, THREADS as gain.py's options.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/gain.py ssl --budget "${BUDGET:-1800}" --seeds "${SEEDS:-0,1,2}" \
    --fractions "${FRACTIONS:-0.01,0.1}" --threads "${THREADS:-2}" ${RUNS:+--runs "$RUNS"}
