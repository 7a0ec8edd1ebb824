#!/usr/bin/env bash
# Builds kiln for one CUDA architecture and writes a self-contained folder that runs on another
# x86-64 Linux machine with an NVIDIA driver: binaries, the non-system shared libraries they
# need (libbenchmark, libyaml-cpp, libopenblas, ...; CUDA/cuDNN libraries are expected on the
# target, e.g. from a PyTorch install), gzipped MNIST, the CLI tests and a run.sh; and the same
# folder as one tarball, OUT_DIR-carry/bundle.tgz, which is what a device call carries (the
# folder itself is over the call's 64 MiB; the tarball about 35 MB):
#   run(carry=["bundle-carry"], command="tar xzf bundle-carry/bundle.tgz && ... bundle/run.sh ...")
# Usage: scripts/gpu_bundle.sh [ARCH] [OUT_DIR]      (default: 90 bundle)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
out=${2:-bundle}
build=build-bundle-sm$arch
# The training runs and the catalogue read full MNIST (the device machine has no network).
ls data/mnist/train-images-idx3-ubyte.gz data/mnist/t10k-labels-idx1-ubyte.gz >/dev/null 2>&1 ||
  { echo "gpu_bundle.sh: no MNIST in data/mnist (run scripts/fetch_data.sh first)" >&2; exit 1; }
# KILN_BLAS=OFF: on the GPU machine the CPU references are only test oracles on small shapes,
# and OpenBLAS alone (36 MB) would push the bundle past what a device call can carry (64 MiB).
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DKILN_BLAS=OFF >"$build/configure.log"
# Without nvcc (or cuDNN) the build would quietly be CPU-only and every GPU test would skip there.
grep -q "^-- kiln: CUDA .*cuDNN: /" "$build/configure.log" ||
  { echo "gpu_bundle.sh: no CUDA build with cuDNN (see $build/configure.log): $(grep -m1 'kiln:' "$build/configure.log")" >&2; exit 1; }
cmake --build "$build" -j "${KILN_JOBS:-$(nproc)}"
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/data/mnist" "$out/tests"
for b in "$build"/train_mnist "$build"/train_cifar "$build"/lr_find "$build"/sweep "$build"/kiln_eval \
         "$build"/tests/kiln_tests "$build"/benchmarks/bench_*; do
  [ -x "$b" ] && cp "$b" "$out/bin/"
done
# Shared libraries that are neither glibc/libstdc++ (present everywhere) nor CUDA (the target
# brings its own driver-matched copies).
for b in "$out"/bin/*; do
  ldd "$b" | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
    libcuda.so*|libcudart.so*|libcublas*|libcudnn*|libnvrtc*|libcurand*|libnccl*) ;;
    *) cp -L "$lib" "$out/lib/" ;;
  esac
done
cp -r tests/data tests/cli tests/bad_inputs "$out/tests/" 2>/dev/null || true
cp -r experiments scripts "$out/" 2>/dev/null || true
cp benchmarks/pytorch_reference.py "$out/scripts/" 2>/dev/null || true  # for run.sh perf
cp data/mnist/*.gz "$out/data/mnist/"
cp scripts/gpu_run.sh "$out/run.sh"  # tested on stub binaries by tests/cli/gpu_run.sh
chmod +x "$out/run.sh"
du -sh "$out"
# The carried tarball, and what a call would send: it and the tracked tree stay under 60 MiB
# (4 MiB of room under the 64 a call carries).
mkdir -p "$out-carry"
tar -czf "$out-carry/bundle.tgz" "$out"
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
total=$(( $(stat -c %s "$out-carry/bundle.tgz") + tree ))
echo "$out-carry/bundle.tgz: $(du -h "$out-carry/bundle.tgz" | cut -f1); with the tracked files, $(( total / 1048576 )) MiB of the 64 a device call carries"
[ "$total" -lt $(( 60 * 1048576 )) ] || { echo "gpu_bundle.sh: too large to carry" >&2; exit 1; }
