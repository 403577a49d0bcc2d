#!/usr/bin/env bash
# The demo's vendor: a license signing key and the keyring an SDK build
# trusts (SEMICLASS_LICENSE_KEYRING=VENDOR_DIR/keyring.json), made once and
# kept, so that licenses issued by earlier demos stay valid.
# Usage: scripts/vendor-key.sh VENDOR_DIR [BIN_DIR]
set -euo pipefail
vendor=$1 bin=${2:-target/release}
if [ -f "$vendor/vendor.key" ]; then
    [ -f "$vendor/keyring.json" ] || {
        echo "$vendor/keyring.json is missing next to vendor.key: remove $vendor to start over" >&2
        exit 1
    }
    exit 0
fi
mkdir -p "$vendor"
"$bin/semiclass-license" --db "$vendor/issuer.sqlite" keygen \
    --out "$vendor/vendor.key" --keyring "$vendor/keyring.json"
