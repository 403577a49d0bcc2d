#!/usr/bin/env bash
# Which stem small images want (README "Small images"): for resnet18 and
# lcnet_050 at 32 px on Fashion-MNIST (10% labels), the same number of
# supervised steps with the ImageNet stem and the compact one, in semiclass
# and in timm (bench/stem_reference.py, the same recipe), one after the
# other in one run; prints val top-1, seconds, and compact / ImageNet.
# STEPS (default 600), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
data=data/fashion-mnist
test -f $data/train.txt || target/release/semiclass demo-data fashion-mnist $data
steps=${STEPS:-600}
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
printf '| model | stem | side | val top-1 | seconds |\n|---|---|---|---:|---:|\n'
for model in resnet18 lcnet_050; do
  for stem in imagenet compact; do
    start=$(date +%s)
    SEMICLASS_REGISTRY=$runs/registry.sqlite target/release/semiclass train --mode large --data $data \
      -o run.dir=$runs -o run.name=$model-$stem -o run.threads=${THREADS:-2} -o large.model=$model \
      -o large.stem=$stem -o large.steps=$steps -o large.ssl.steps=0 -o large.evals_per_stage=1 \
      > $runs/$model-$stem.log 2>&1
    secs=$(( $(date +%s) - start ))
    val=$(grep -o 'val top-1 [0-9.]*%' $runs/$model-$stem.log | tail -n1 | grep -o '[0-9.]*%')
    printf '| %s | %s | semiclass | %s | %s |\n' $model $stem "$val" "$secs"
    .venv/bin/python bench/stem_reference.py $data $model $stem $steps 32 \
      | awk -v m=$model -v s=$stem '/steps:/ {printf "| %s | %s | timm | %s%% | %s |\n", m, s, $NF, $(NF-2)}' | sed 's/s |$/ |/'
  done
done
