#!/usr/bin/env bash
# What distillation is worth (issue 5's benchmark): Fashion-MNIST with 10%
# labels, a small student (lcnet_050 at 32 px), test.txt accuracy of
#   (a) the student supervised on the 10% labels,
#   (b) the student distilled offline (cached teacher predictions),
#   (c) the student distilled online (teacher on the student's own views),
#   (d) the student supervised on 100% of the labels,
# and the teacher's own accuracy. (a), (b), (c), (d) take about the same
# number of optimizer steps. test.txt never picks a checkpoint (val does).
# Also: the cost of a distillation epoch over a supervised epoch of the
# same images, from (b)'s and (d)'s images/s.
# TEACHER: a checkpoint to distill from; default: trained here first
# (resnet18 at 32 px, WARM supervised + SSL FixMatch epochs over the 10%).
# EPOCHS: passes over the 55,000 train images; T: the distillation
# temperature. Run through `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${EPOCHS:-3}
WARM=${WARM:-4}
SSL=${SSL:-12}
STUDENT=${STUDENT:-lcnet_050}
T=${T:-4}
. bench/lib/fashion-mnist.sh
common=(-o run.dir="$RUNS" -o large.log_interval=1000 -o small.log_interval=1000)

if [ -z "${TEACHER:-}" ]; then
    $SEMICLASS train --mode large --data "$TEN" "${common[@]}" -o run.name=teacher \
        -o large.model=resnet18 -o large.input_size=32 -o large.epochs="$WARM" \
        -o large.ssl.epochs="$SSL" > "$RUNS/teacher.log"
    TEACHER=$RUNS/teacher/checkpoints/best.safetensors
fi
$SEMICLASS eval "$TEACHER" --data "$TEN" --split test > "$RUNS/teacher-eval.log"
teacher=$(grep -m1 'top-1' "$RUNS/teacher-eval.log" | sed -E 's/.*top-1 ([0-9.]+)%.*/\1/')

student=(-o large.model="$STUDENT" -o large.input_size=32 -o large.lr=0.05 -o large.ssl.algorithm=supervised)
# 859 steps per epoch over 55,000 images, 85 over the 5,500 labeled ones.
$SEMICLASS train --mode large --data "$TEN" "${common[@]}" "${student[@]}" -o run.name=a-supervised-10 \
    -o large.epochs=$((EPOCHS * 10)) > "$RUNS/a.log"
for mode in offline online; do
    $SEMICLASS train --mode small --data "$TEN" --teacher "$TEACHER" "${common[@]}" -o run.name="distill-$mode" \
        -o small.model="$STUDENT" -o small.input_size=32 -o small.epochs="$EPOCHS" \
        -o small.distill.mode="$mode" -o small.distill.t="$T" > "$RUNS/$mode.log"
done
$SEMICLASS train --mode large --data "$ALL" "${common[@]}" "${student[@]}" -o run.name=d-supervised-100 \
    -o large.epochs="$EPOCHS" -o large.warmup_epochs=0.2 > "$RUNS/d.log"

python - "$RUNS" "$teacher" "$(test_top1 "$RUNS/a.log" large)" "$(test_top1 "$RUNS/offline.log" small)" \
    "$(test_top1 "$RUNS/online.log" small)" "$(test_top1 "$RUNS/d.log" large)" "$STUDENT" "$EPOCHS" <<'PY'
import csv, sys
runs, teacher, a, b, c, d = sys.argv[1], *map(float, sys.argv[2:7])
student, epochs = sys.argv[7], sys.argv[8]
def images_per_s(run, stage):
    rows = [r for r in csv.DictReader(open(f"{runs}/{run}/metrics.csv"))
            if r["stage"] == stage and r["images_per_s"]]
    return sum(float(r["images_per_s"]) for r in rows) / max(1, len(rows))
offline, online = images_per_s("distill-offline", "distill"), images_per_s("distill-online", "distill")
supervised = images_per_s("d-supervised-100", "supervised")
print(f"teacher:                                           test top-1 {teacher:.2f}%")
print(f"(a) {student} supervised, 10% labels:            test top-1 {a:.2f}%")
print(f"(b) {student} distilled offline, {epochs} epochs:       test top-1 {b:.2f}%")
print(f"(c) {student} distilled online, {epochs} epochs:        test top-1 {c:.2f}%")
print(f"(d) {student} supervised, 100% labels, {epochs} epochs: test top-1 {d:.2f}%")
print(f"best distilled - (d): {max(b, c) - d:+.2f} points")
print(f"epoch cost, offline distillation / supervised: {supervised / offline:.2f} "
      f"({offline:.0f} vs {supervised:.0f} img/s); online: {supervised / online:.2f} ({online:.0f} img/s)")
PY
