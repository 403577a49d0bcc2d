#!/usr/bin/env bash
# Serves a package with a fresh access token, calls the prediction API on one
# image and prints the answer, then stops the server: the last step of
# `make demo` once a package is exported.
# Usage: scripts/serve-demo.sh PACKAGE_DIR_OR_ZIP IMAGE [SERVE_BINARY]
set -euo pipefail
package=$1 image=$2 serve=${3:-target/release/semiclass-serve}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

token=$("$serve" --tokens "$work/tokens.json" token create --name demo 2>/dev/null)
"$serve" --tokens "$work/tokens.json" serve --package "$package" --listen 127.0.0.1:0 \
    2> >(tee "$work/log" >&2) &
pid=$!
for _ in $(seq 600); do
    addr=$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$work/log" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "semiclass-serve exited" >&2; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "semiclass-serve did not start" >&2; exit 1; }
id=$(curl -sf -H "Authorization: Bearer $token" "http://$addr/v1/models" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["models"][0]["id"])')
echo "POST http://$addr/v1/models/$id/predict?topk=3  ($image)"
curl -sf -H "Authorization: Bearer $token" -H "Content-Type: application/octet-stream" \
    --data-binary "@$image" "http://$addr/v1/models/$id/predict?topk=3" | python3 -m json.tool
