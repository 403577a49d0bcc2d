#!/usr/bin/env bash
# The main job end to end on real data, as `make demo` (full) and `make
# demo-quick` (quick) run it after `make demo-build`. Every step below is a
# command a user can run alone.
# Usage: scripts/demo.sh full|quick
set -euo pipefail
variant=${1:?usage: scripts/demo.sh full|quick}
case $variant in
    full) recipe=configs/demo.yaml name=demo nick=demo ;;
    quick) recipe=configs/demo-quick.yaml name=demo-quick nick=demo-quick ;;
    *) echo "scripts/demo.sh: unknown variant '$variant' (full or quick)" >&2; exit 2 ;;
esac
root=$(pwd)
semiclass=target/release/semiclass
dataset=$root/data/fashion-mnist
vendor=$root/data/vendor
# One run folder per demo, so that a second demo never meets the first.
run=$name-$(date -u +%Y%m%d-%H%M%S)
large=$root/runs/$run/large/checkpoints/best.safetensors
small=$root/runs/$run/small/checkpoints/best.safetensors
packages=$root/runs/$run/packages
image=$dataset/images/test/00000.png

step() { printf '\n== %s\n' "$*"; }
if [ "$variant" = quick ]; then
    echo "demo-quick: every step of 'make demo' with about a minute of training;"
    echo "its accuracies are not the demo's (run 'make demo' for those)."
fi

step "the dataset: Fashion-MNIST with 10% of the train labels, checked"
$semiclass demo-data fashion-mnist "$dataset" --labeled-frac 0.1 --seed 0
$semiclass check "$dataset" --max-shown 5

step "training: the large model semi-supervised, the small one distilled from it ($recipe)"
start=$(date +%s)
$semiclass train --mode joint --data "$dataset" -c "$recipe" \
    -o run.dir="$root/runs" -o run.name="$run"
train_seconds=$(($(date +%s) - start))

step "evaluation on test.txt (it never picked a checkpoint), and marks"
$semiclass eval "$large" --data "$dataset" --split test | tee "$root/runs/$run/large-test.txt"
$semiclass eval "$small" --data "$dataset" --split test | tee "$root/runs/$run/small-test.txt"
$semiclass mark "$large" "$nick-large" --note "make $name: large model"
$semiclass mark "$small" "$nick-small" --note "make $name: small model"

step "export: both as CPU packages (ONNX + ONNX Runtime + the offline SDK, the model encrypted), and for the server"
$semiclass export "@$nick-small" --target cpu-x86_64 --out "$packages/small"
$semiclass export "@$nick-large" --target cpu-x86_64 --out "$packages/large"
small_zip=$(ls "$packages"/small/*.zip)
large_zip=$(ls "$packages"/large/*.zip)
# The server runs packages in clear (an SDK package's model opens only in
# the SDK, with a license).
$semiclass export "@$nick-small" --target cpu-x86_64 --without-sdk --out "$packages/serve-small"
$semiclass export "@$nick-large" --target cpu-x86_64 --without-sdk --out "$packages/serve-large"

step "the offline SDK: a serial bought, activated offline, a test image classified"
scripts/sdk-demo.sh "$small_zip" "$vendor" "$image"

step "serving: both packages over HTTP with an access token"
scripts/serve-demo.sh "$image" "$packages"/serve-small/*.zip "$packages"/serve-large/*.zip

step "summary ($variant)"
accuracy() { sed -n 's/.*\(top-1 [0-9.]*%\).*/\1/p' "$1" | head -n 1; }
echo "run folder:      runs/$run (training took ${train_seconds} s)"
echo "large model:     $(accuracy "$root/runs/$run/large-test.txt") on test.txt  (@$nick-large)"
echo "small model:     $(accuracy "$root/runs/$run/small-test.txt") on test.txt  (@$nick-small)"
echo "packages:        $small_zip"
echo "                 $large_zip"
echo "studio:          $semiclass studio   (these runs, marks and evaluations in the browser; it prints the address to open)"
if [ "$variant" = quick ]; then
    echo "demo-quick: these accuracies come from about a minute of training; 'make demo' trains the real models."
fi
