#!/usr/bin/env bash
# Serves packages with a fresh access token, calls the prediction API of each
# model on one image and prints the answers, then stops the server: the last
# step of `make demo`.
# Usage: scripts/serve-demo.sh IMAGE PACKAGE_DIR_OR_ZIP... (SERVE=binary to override)
set -euo pipefail
image=$1
shift
serve=${SERVE:-target/release/semiclass-serve}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

touch "$work/log"
token=$("$serve" --tokens "$work/tokens.json" token create --name demo 2>/dev/null)
packages=()
for p in "$@"; do packages+=(--package "$p"); done
"$serve" --tokens "$work/tokens.json" serve "${packages[@]}" --listen 127.0.0.1:0 \
    2> >(tee "$work/log" >&2) &
pid=$!
addr=
for _ in $(seq 600); do
    addr=$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$work/log" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "semiclass-serve exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "semiclass-serve did not start" >&2; exit 1; }
echo "without the token: HTTP $(curl -s -o /dev/null -w '%{http_code}' "http://$addr/v1/models")"
ids=$(curl -sf -H "Authorization: Bearer $token" "http://$addr/v1/models" |
    python3 -c 'import json, sys; print(*[m["id"] for m in json.load(sys.stdin)["models"]])')
for id in $ids; do
    echo "POST http://$addr/v1/models/$id/predict?topk=3  ($image)"
    curl -sf -H "Authorization: Bearer $token" -H "Content-Type: application/octet-stream" \
        --data-binary "@$image" "http://$addr/v1/models/$id/predict?topk=3" | python3 -m json.tool
done
echo "try-out page: http://$addr/ (this demo server stops now; run semiclass-serve yourself to keep one)"
