#!/usr/bin/env bash
# USB's FixMatch (semilearn 0.3.2) and `semiclass train --mode large`
# (FixMatch) side by side on the same images, labels, timm architecture,
# wall-clock budget and threads; prints one table (bench/usb_peer.py has the
# protocol and the differences between the two).
#
#   bench/usb-peer.sh [DATASET]
#
# DATASET: a folder in semiclass's format (default: Fashion-MNIST at
# FRACTION of the labels, built by `semiclass demo-data` into
# data/fashion-mnist for 0.1, data/fashion-mnist-FRACTION otherwise: the
# folders bench/ssl-gain.sh uses). Environment: BUDGET seconds per side
# (1800), SEED (0), THREADS (2), FRACTION (0.1), RUNS (a new temporary
# folder), SEMICLASS (target/release/semiclass, built by `cargo build
# --release -p semiclass-trainer`), USB_VENV (target/usb-venv: made here on
# first use, from PyPI, with bench/requirements-usb.txt), PIPELINE=1 to add
# ours with its supervised warm start as a third row. Nothing is downloaded
# after the venv exists.
set -euo pipefail
cd "$(dirname "$0")/.."
SEMICLASS=${SEMICLASS:-target/release/semiclass}
VENV=${USB_VENV:-target/usb-venv}
FRACTION=${FRACTION:-0.1}
if [ ! -x "$SEMICLASS" ]; then
    echo "no $SEMICLASS: cargo build --release -p semiclass-trainer (see README), or set SEMICLASS" >&2
    exit 2
fi
# The setup step: the only one that reaches PyPI.
STAMP="$VENV/.installed"
if [ ! -f "$STAMP" ] || ! cmp -s bench/requirements-usb.txt "$STAMP"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r bench/requirements-usb.txt
    "$VENV/bin/pip" install -q --no-deps semilearn==0.3.2
    "$VENV/bin/python" -c "import torch, semilearn.algorithms.fixmatch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
    cp bench/requirements-usb.txt "$STAMP"
fi
DATA=${1:-}
if [ -z "$DATA" ]; then
    if [ "$FRACTION" = 0.1 ]; then DATA=data/fashion-mnist; else DATA=data/fashion-mnist-$FRACTION; fi
    [ -d "$DATA" ] || "$SEMICLASS" demo-data fashion-mnist "$DATA" --labeled-frac "$FRACTION" --seed 0
fi
# Nothing downloads at run time: timm builds resnet18 without weights, wandb and aim stay off.
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled
exec "$VENV/bin/python" bench/usb_peer.py --data "$DATA" --budget "${BUDGET:-1800}" \
    --seed "${SEED:-0}" --threads "${THREADS:-2}" --semiclass "$SEMICLASS" \
    ${RUNS:+--runs "$RUNS"} ${PIPELINE:+--pipeline} ${USB_PEER_ARGS:-}
