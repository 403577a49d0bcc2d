#!/usr/bin/env bash
# Data-parallel scaling on this machine's cores: `semiclass train --nproc 2`
# (c10d, Gloo) with 1 thread per rank against 1 rank x 1 thread (same
# per-rank batch: ideal ratio 2, issue 18 asks >= 1.7) and against 1 rank x
# 2 threads (same cores, same global batch: asks >= 0.85); side by side,
# PyTorch DDP (torchrun, Gloo) on the same timm model and batches
# (bench/ddp_peer.py). Our all-reduce share is the run's own report
# ("data-parallel: gradient all-reduce, waited for after backward: X s of
# Y s": what the overlap with backward did not hide), which includes data
# loading and evaluation in Y: an upper bound on nothing, a lower bound on
# the share of step time. Needs an otherwise idle machine.
# "1r x 1t, 1 core" pins that run to one core (taskset): unpinned, a
# 1-thread rank still decodes its images on a loader thread, which has the
# second core to itself; two ranks share both cores with two loaders.
# MODEL, SIZE, BATCH (per rank), STEPS as below. Run through `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
SEMICLASS=${SEMICLASS:-target/release/semiclass}
MODEL=${MODEL:-resnet18} SIZE=${SIZE:-32} BATCH=${BATCH:-64} STEPS=${STEPS:-60}
FMNIST=${DATA:-data/fashion-mnist}
[ -d "$FMNIST" ] || $SEMICLASS demo-data fashion-mnist "$FMNIST"
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT

# ours NAME THREADS GLOBAL_BATCH [--nproc N]: median img/s of the log lines
# after the first (warm-up), and the all-reduce line when distributed.
ours() {
    local name=$1 threads=$2 batch=$3; shift 3
    OMP_NUM_THREADS=$threads ${PIN:-} $SEMICLASS train --mode large --data "$FMNIST" "$@" \
        -o run.dir="$runs" -o run.name="$name" -o run.device=cpu -o run.threads="$threads" \
        -o large.model="$MODEL" -o large.input_size="$SIZE" -o large.batch_size="$batch" \
        -o large.steps="$STEPS" -o large.ssl.steps=0 -o large.log_interval=10 \
        -o large.evals_per_stage=1 -o data.workers=1 >"$runs/$name.log" 2>&1
    python3 - "$runs/$name.log" <<'PY'
import re, statistics, sys
text = open(sys.argv[1]).read()
rates = [float(m) for m in re.findall(r"\] epoch \d+ step \d+/\d+ .* (\d+) img/s", text)][1:-1]
share = re.search(r"gradient all-reduce.*\(([\d.]+)%\)", text)
print(f"{statistics.median(rates):.1f}", share.group(1) if share else "-")
PY
}
peer() {
    local nproc=$1 threads=$2 batch=$3
    if [ "$nproc" -gt 1 ]; then
        torchrun --standalone --nproc-per-node "$nproc" bench/ddp_peer.py "$MODEL" "$SIZE" "$batch" "$STEPS" "$threads" 2>/dev/null
    else
        python3 bench/ddp_peer.py "$MODEL" "$SIZE" "$batch" "$STEPS" "$threads"
    fi | sed -E 's/ img\/s, all-reduce ([0-9.]+)% of step time/ \1/'
}

read -r o11 _ < <(ours one1 1 "$BATCH")
read -r o11p _ < <(PIN="taskset -c 0" ours one1pin 1 "$BATCH")
read -r o12 _ < <(ours one2 2 $((2 * BATCH)))
read -r o21 os < <(ours two1 1 $((2 * BATCH)) --nproc 2)
read -r p11 _ < <(peer 1 1 "$BATCH")
read -r p12 _ < <(peer 1 2 $((2 * BATCH)))
read -r p21 ps < <(peer 2 1 "$BATCH")
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo "$MODEL at ${SIZE}px, $BATCH images per rank and step, $STEPS steps, img/s"
echo "                  1r x 1t   1r x 1t, 1 core   1r x 2t   2r x 1t   2r1t/1r1t   2r1t/1r1t 1 core   2r1t/1r2t   all-reduce %"
printf "semiclass (c10d)  %7s   %15s   %7s   %7s   %9s   %16s   %9s   %s (waited for, of the run)\n" "$o11" "$o11p" "$o12" "$o21" "$(ratio "$o21" "$o11")" "$(ratio "$o21" "$o11p")" "$(ratio "$o21" "$o12")" "$os"
printf "PyTorch DDP       %7s   %15s   %7s   %7s   %9s   %16s   %9s   %s (of step time)\n" "$p11" "-" "$p12" "$p21" "$(ratio "$p21" "$p11")" "-" "$(ratio "$p21" "$p12")" "$ps"
