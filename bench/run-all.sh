#!/usr/bin/env bash
# Every benchmark, one after the other. Each prints its own side-by-side ratio.
set -euo pipefail
cd "$(dirname "$0")"
for bench in ./*.sh; do
    [ "$bench" = ./run-all.sh ] && continue
    echo "== $bench"
    "$bench"
done
