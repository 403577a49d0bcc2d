#!/usr/bin/env bash
# The quick demo as a new user meets it: `make demo-quick` in a clean clone
# of this checkout's HEAD (committed work only), in a temporary folder that
# is removed afterwards. Run it before landing a change to setup, the
# Makefile or the demo scripts: a venv or build folder already in place
# here hides a missing install step. CI does not run it (see .ci/run).
# Usage: scripts/fresh-clone-demo.sh [make target, default demo-quick]
set -euo pipefail
target=${1:-demo-quick}
here=$(cd "$(dirname "$0")/.." && pwd)
clone=$(mktemp -d "${TMPDIR:-/tmp}/semiclass-fresh.XXXXXX")
trap 'rm -rf "$clone"' EXIT
git clone -q "$here" "$clone"
echo "fresh clone of $(git -C "$here" rev-parse --short HEAD) in $clone: make $target"
start=$(date +%s)
rc=0
make -C "$clone" "$target" || rc=$?
echo "fresh-clone make $target: rc $rc in $(($(date +%s) - start)) s"
exit "$rc"
