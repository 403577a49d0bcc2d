#!/usr/bin/env bash
# What the unlabeled images are worth (issue 4's benchmark): Fashion-MNIST,
# resnet18 at 32 px, test.txt accuracy of
#   (a) supervised on the 10% labels,
#   (b) semi-supervised (supervised warm start + FixMatch), the same number
#       of optimizer steps as (a),
#   (c) supervised on 100% of the labels, the same number of steps,
# and the share of the (a)-(c) gap that (b) closes. test.txt never picks a
# checkpoint (val does). Also the data-wait share and images/s of (b).
# WARM and SSL are epochs over the labeled 10% (defaults: the full run,
# about 25 minutes on 2 cores); run through `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
WARM=${WARM:-5}
SSL=${SSL:-20}
. bench/lib/fashion-mnist.sh

common=(-o run.dir="$RUNS" -o large.model=resnet18 -o large.input_size=32 -o large.log_interval=1000)
# Steps per epoch over the 10% (5,500 images, batch 64): 85. The 100% run
# has 859 per epoch, so it gets the same steps as fractional epochs.
steps=$(( (WARM + SSL) * 85 ))

$SEMICLASS train --mode large --data "$TEN" "${common[@]}" -o run.name=a-supervised-10 \
    -o large.epochs=$((WARM + SSL)) -o large.ssl.algorithm=supervised > "$RUNS/a.log"
$SEMICLASS train --mode large --data "$TEN" "${common[@]}" -o run.name=b-fixmatch-10 \
    -o large.epochs="$WARM" -o large.ssl.epochs="$SSL" -o large.ssl.algorithm=fixmatch > "$RUNS/b.log"
# Whole epochs over 55,000 images: the nearest count of steps to $steps.
all_epochs=$(( (steps + 429) / 859 )); [ "$all_epochs" -ge 1 ] || all_epochs=1
$SEMICLASS train --mode large --data "$ALL" "${common[@]}" -o run.name=c-supervised-100 \
    -o large.epochs="$all_epochs" -o large.ssl.algorithm=supervised > "$RUNS/c.log"

a=$(test_top1 "$RUNS/a.log"); b=$(test_top1 "$RUNS/b.log"); c=$(test_top1 "$RUNS/c.log")
python - "$a" "$b" "$c" "$RUNS/b-fixmatch-10/metrics.csv" "$steps" "$all_epochs" <<'PY'
import csv, sys
a, b, c = map(float, sys.argv[1:4])
rows = [r for r in csv.DictReader(open(sys.argv[4])) if r["stage"] == "ssl" and r["images_per_s"]]
ips = sum(float(r["images_per_s"]) for r in rows) / max(1, len(rows))
wait = sum(float(r["data_wait"]) for r in rows) / max(1, len(rows))
print(f"(a) supervised, 10% labels, {sys.argv[5]} steps:      test top-1 {a:.2f}%")
print(f"(b) warm start + FixMatch, 10% labels, same steps: test top-1 {b:.2f}%")
print(f"(c) supervised, 100% labels, {sys.argv[6]} epoch(s):     test top-1 {c:.2f}%")
gap = (b - a) / (c - a) if c != a else float("nan")
print(f"gap closed by (b): {100 * gap:.0f}%   FixMatch steps: {ips:.0f} img/s, data wait {100 * wait:.1f}%")
PY
