#!/usr/bin/env bash
# Installs the Debian packages semiclass uses, when they are missing:
#   dataset-fashion-mnist  the real data of the demo, benchmarks and tests
#   fonts-wqy-microhei     a font with CJK glyphs for chart labels
#   chromium, npm          the try-out page's and the studio's browser tests
#                          (headless Chromium driven by playwright-core, which
#                          `make setup` installs with npm)
set -euo pipefail

need=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || [ -n "${SEMICLASS_FONT:-}" ] || need+=(fonts-wqy-microhei)
command -v chromium >/dev/null || [ -n "${CHROMIUM:-}" ] || need+=(chromium)
command -v npm >/dev/null || need+=(npm)

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "semiclass needs these Debian packages: ${need[*]}" >&2
    echo "install them as root:  sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q "${need[@]}" >/dev/null
