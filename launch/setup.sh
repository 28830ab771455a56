#!/usr/bin/env bash
# Installs the Debian packages yocotron needs on a CPU machine (Debian 12). Idempotent and quiet:
# packages already present are not touched; nothing is printed when nothing is missing.
set -euo pipefail

PACKAGES=(
  g++ cmake ninja-build git pkg-config
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin
  libyaml-cpp-dev libspdlog-dev nlohmann-json3-dev catch2
  libsentencepiece-dev libzstd-dev zstd
  curl ca-certificates
  librsvg2-bin fonts-dejavu-core
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
