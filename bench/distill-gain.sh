#!/usr/bin/env bash
# What distillation is worth, at equal wall-clock budgets: lcnet_050 (d)
# supervised on the labels, (e) distilled offline and (f) online from the
# large pipeline's model, (g) supervised on 100% of the labels; Fashion-MNIST
# at 1% and 10% labels, seeds 0,1,2. See bench/gain.py for the protocol.
# TEACHER: a checkpoint to distill from (default: (b) of ssl-gain, trained
# here first with seed 0). BUDGET, SEEDS, FRACTIONS, THREADS as ssl-gain.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/gain.py distill --budget "${BUDGET:-1800}" --seeds "${SEEDS:-0,1,2}" \
    --fractions "${FRACTIONS:-0.01,0.1}" --threads "${THREADS:-2}" ${RUNS:+--runs "$RUNS"} \
    ${TEACHER:+--teacher "$TEACHER"}
