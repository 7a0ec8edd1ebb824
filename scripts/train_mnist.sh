#!/usr/bin/env bash
# One command: install dependencies, build, fetch MNIST, train the default model and print
# the result. Extra arguments go to train_mnist (e.g. --model mlp --epochs 1 --device cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh --train --data  # not the tests' extras (PyTorch, clang, ...)
preset=cpu
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then preset=cuda; fi
preset=${KILN_PRESET:-$preset}
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "${KILN_JOBS:-$(nproc)}" --target train_mnist
scripts/fetch_data.sh --only mnist
bindir=build
case "$preset" in cpu) bindir=build-cpu ;; ci) bindir=build-ci ;; asan) bindir=build-asan ;; emu) bindir=build-emu ;; esac
# (the working directory is the repository's, so the default --data-dir is its data/; a flag
# here would override a --config file's data_dir)
exec "$bindir/train_mnist" "$@"
