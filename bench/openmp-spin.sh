#!/usr/bin/env bash
# How long libtorch's OpenMP threads spin before they sleep
# (trainer/src/openmp.rs): training-step throughput (bench/src/bin/
# train-step.rs: forward, backward, SGD; batch 64, 2 threads) with
# libgomp's default spin (up to 300,000 iterations), with the 3,000 the
# training commands set, with 1,000, and sleeping at once
# (OMP_WAIT_POLICY=passive); on the machine as it is ("quiet") and with one
# busy process competing for a core ("busy": what a shared machine, a
# second job or a build beside the training does). The settings alternate
# within each round; best of ROUNDS. Prints img/s and each setting's ratio
# to libgomp's default.
# Run through `make bench` (builds release binaries), or after
# `cargo build --release -p semiclass-bench --bin train-step`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
STEP=target/release/train-step
SETTINGS=(default 3000 1000 passive)
max() { python3 -c "print(max($1, $2))"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
step() { # setting, then train-step's arguments
    local setting=$1
    shift
    case $setting in
        default) env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY "$STEP" "$@" ;;
        passive) env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive "$STEP" "$@" ;;
        *) env -u OMP_WAIT_POLICY GOMP_SPINCOUNT="$setting" "$STEP" "$@" ;;
    esac
}
busy=
trap '[ -n "$busy" ] && kill "$busy" 2>/dev/null' EXIT
printf '%-14s %-6s' model machine
for s in "${SETTINGS[@]}"; do printf ' %14s' "$s img/s"; done
echo "   ratios to default (${SETTINGS[*]:1})"
for machine in quiet busy; do
    if [ "$machine" = busy ]; then
        (while :; do :; done) &
        busy=$!
    fi
    for spec in "lcnet_050 32 64 20 2 compact" "resnet18 32 64 8 2 imagenet"; do
        read -r -a args <<<"$spec"
        declare -A best=()
        for s in "${SETTINGS[@]}"; do best[$s]=0; done
        for _ in $(seq "$ROUNDS"); do
            for s in "${SETTINGS[@]}"; do
                best[$s]=$(max "${best[$s]}" "$(step "$s" "${args[@]}")")
            done
        done
        printf '%-14s %-6s' "${args[0]}@${args[1]}" "$machine"
        for s in "${SETTINGS[@]}"; do printf ' %14.1f' "${best[$s]}"; done
        printf '  '
        for s in "${SETTINGS[@]:1}"; do printf ' %s' "$(ratio "${best[$s]}" "${best[default]}")"; done
        echo
    done
    if [ -n "$busy" ]; then kill "$busy"; busy=; fi
done
