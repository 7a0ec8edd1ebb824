#!/usr/bin/env bash
# Builds kiln for one CUDA architecture and writes a self-contained folder that runs on another
# x86-64 Linux machine with an NVIDIA driver: binaries, the non-system shared libraries they
# need (libbenchmark, libyaml-cpp, libopenblas, ...; CUDA/cuDNN libraries are expected on the
# target, e.g. from a PyTorch install), gzipped MNIST, the CLI tests and a run.sh.
# Usage: scripts/gpu_bundle.sh [ARCH] [OUT_DIR]      (default: 90 bundle)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-90}
out=${2:-bundle}
build=build-bundle-sm$arch
# KILN_BLAS=OFF: on the GPU machine the CPU references are only test oracles on small shapes,
# and OpenBLAS alone (36 MB) would push the bundle past what a device call can carry (64 MiB).
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DKILN_BLAS=OFF >/dev/null
cmake --build "$build" -j "${KILN_JOBS:-$(nproc)}"
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/data/mnist" "$out/tests"
for b in "$build"/train_mnist "$build"/train_cifar "$build"/lr_find "$build"/sweep \
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
if ls data/mnist/*.gz >/dev/null 2>&1; then cp data/mnist/*.gz "$out/data/mnist/"; fi
cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the GPU tests, compute-sanitizer over them, a CUDA training run and the benchmarks.
# Logs go to ${OUT:-./out}. Usage: run.sh [tests|sanitize|train|bench|perf|all]...
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
# CUDA libraries: the system's, or those of a PyTorch venv (nvidia/*/lib).
extra=$(ls -d /opt/torch/lib/python3*/site-packages/nvidia/*/lib /usr/local/lib/python3*/dist-packages/nvidia/*/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$here/lib:${extra}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
bin=$here/bin
what=${*:-all}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
ldd "$bin/kiln_tests" | grep -E "not found|cublas|cudnn" | tee "$out/ldd.txt"
has() { [[ " $what " == *" $1 "* || " $what " == *" all "* ]]; }
if has tests; then
  "$bin/kiln_tests" --gtest_brief=1 2>&1 | tail -40 | tee "$out/tests.txt"
  KILN_BIN=$bin KILN_TEST_DATA=$here/tests/data bash "$here/tests/cli/train_mnist.sh" 2>&1 | tee "$out/cli.txt"
fi
if has sanitize; then
  for tool in memcheck racecheck initcheck synccheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 9 "$bin/kiln_tests" --gtest_filter='*Gpu*' --gtest_brief=1 \
      >"$out/sanitize-$tool.txt" 2>&1
    echo "compute-sanitizer $tool: exit $? ($(grep -c 'ERROR SUMMARY: 0 errors' "$out/sanitize-$tool.txt") clean summaries)"
  done
fi
if has train; then
  "$bin/train_mnist" --device cuda --data-dir "$here/data" --model mlp --epochs 3 --log "$out/mlp.jsonl" 2>&1 | tee "$out/train-mlp.txt"
  "$bin/train_mnist" --device cuda --data-dir "$here/data" --model cnn --epochs 15 --log "$out/cnn.jsonl" 2>&1 | tee "$out/train-cnn.txt"
fi
if has bench; then
  for b in "$bin"/bench_*; do
    "$b" --benchmark_min_time=0.2 --benchmark_out="$out/$(basename "$b").json" --benchmark_out_format=json \
      2>&1 | tee "$out/$(basename "$b").txt" | tail -5
  done
fi
if has perf; then  # kiln vs PyTorch side by side (docs/PERFORMANCE.md)
  KILN_BENCH_TRAIN=$bin/bench_train OUT=$out bash "$here/scripts/bench_compare.sh" "$out" 2>&1 | tee "$out/perf.txt"
fi
RUN
chmod +x "$out/run.sh"
du -sh "$out"
