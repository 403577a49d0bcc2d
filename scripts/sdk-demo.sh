#!/usr/bin/env bash
# The offline SDK as a buyer meets it, with this script also playing the
# vendor: unpack the package, mint a serial, activate offline (request file ->
# signed license file), then classify an image with the package's own `infer`.
# Usage: scripts/sdk-demo.sh PACKAGE_ZIP VENDOR_DIR IMAGE [BIN_DIR]
#   VENDOR_DIR holds the vendor's signing key and issuer database
#   (scripts/vendor-key.sh makes them); BIN_DIR has semiclass-license.
set -euo pipefail
zip=$1 vendor=$2 image=$3 bin=${4:-target/release}
license_tool() { "$bin/semiclass-license" --db "$vendor/issuer.sqlite" "$@"; }

package=${zip%.zip}
rm -rf "$package"
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$package"
# zipfile drops the permission bits: restore the executables'.
chmod +x "$package/bin/infer"
infer=("$package/bin/infer" --activation-dir "$package.activation")
rm -rf "$package.activation"

echo "== vendor: register the package and mint a serial"
license_tool add-package "$package/manifest.json"
id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["package_id"])' "$package/manifest.json")
serial=$(license_tool issue --package "$id" --max-activations 1)
echo "serial for $id: $serial"

echo "== buyer: without a license the package refuses to run"
if "${infer[@]}" predict "$image" 2>&1; then
    echo "the package ran without a license" >&2
    exit 1
fi

echo "== buyer: nor does the unzipped model open in a stock ONNX Runtime (it is encrypted)"
if python3 - "$package/model/model.onnx" <<'PY' 2>&1
import sys
import onnxruntime
try:
    onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
except Exception as err:
    print(f"onnxruntime refused it: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
    sys.exit(1)
PY
then
    echo "a stock ONNX Runtime loaded the packaged model" >&2
    exit 1
fi

echo "== buyer: offline activation request"
"${infer[@]}" activate --serial "$serial" --offline
echo "== vendor: sign the request"
license_tool sign-request "$package.activation/activation-request.json" \
    --key "$vendor/vendor.key" --out "$package.license.lic"
echo "== buyer: install the license, then classify"
"${infer[@]}" activate --license "$package.license.lic"
"${infer[@]}" info
"${infer[@]}" predict "$image" --topk 3
