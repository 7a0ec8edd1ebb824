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
if ls data/mnist/*.gz >/dev/null 2>&1; then cp data/mnist/*.gz "$out/data/mnist/"; fi
cat >"$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every GPU check of the issues on the device machine; logs go to ${OUT:-./out} and a
# summary table (summary.txt) is printed last. Steps (default all, in this order):
#   tests     GPU gtests + the train_mnist CLI test on the GPU
#   train     mlp 3 epochs (>= 98%), cnn 15 epochs (>= 99.0%), cnn + BN + dropout 0.05 15 epochs
#             (>= 99.4%), one mlp epoch on GPU vs CPU (epoch time)
#   resume    kill-and-resume on CUDA in --deterministic mode (tests/cli/resume.sh)
#   interop   PyTorch loads the cnn checkpoint and matches kiln's logits (rtol 1e-4)
#   tta       time to 99% test accuracy, 5 seeds (scripts/time_to_acc.sh)
#   catalogue experiments/*.yaml on the GPU (scripts/catalogue.sh, CATALOGUE_BUDGET seconds per
#             call, default 480; resumes where the last call stopped while the machine is warm)
#   sanitize  compute-sanitizer memcheck/racecheck/initcheck/synccheck over the GPU gtests
#   bench     every bench_* binary (kernels vs cuDNN/cuBLAS, copy bandwidth, optimizer floor)
#   perf      bench_train vs PyTorch (scripts/bench_compare.sh)
# A device call is limited to 10 minutes: pass a few steps per call, e.g. "tests train resume
# interop tta", then "sanitize", then "bench perf".
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
# CUDA libraries: the system's, or those of a PyTorch venv (nvidia/*/lib).
extra=$(ls -d /opt/torch/lib/python3*/site-packages/nvidia/*/lib /usr/local/lib/python3*/dist-packages/nvidia/*/lib 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="$here/lib:${extra}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
py=$(ls /opt/torch/bin/python3 2>/dev/null || command -v python3)
bin=$here/bin
data=$here/data
what=${*:-all}
summary=$out/summary.txt
: >"$summary"
row() { printf '%-34s %s\n' "$1" "$2" | tee -a "$summary" >/dev/null; }
last() { tail -1 "$1" 2>/dev/null; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
row "device" "$(head -1 "$out/gpu.txt")"
ldd "$bin/kiln_tests" | grep -E "not found|cublas|cudnn" | tee "$out/ldd.txt"
has() { [[ " $what " == *" $1 "* || " $what " == *" all "* ]]; }
if has tests; then
  "$bin/kiln_tests" --gtest_brief=1 >"$out/tests-full.txt" 2>&1
  rc=$?
  tail -40 "$out/tests-full.txt" | tee "$out/tests.txt"
  row "gtests (all, GPU present)" "exit $rc; $(grep -E '^\[  PASSED|^\[  FAILED  \] [0-9]|SKIPPED \]' "$out/tests-full.txt" | tr '\n' ' ')"
  KILN_BIN=$bin KILN_TEST_DATA=$here/tests/data bash "$here/tests/cli/train_mnist.sh" >"$out/cli.txt" 2>&1
  row "cli train_mnist test" "exit $?"
fi
if has train; then
  t() {  # name, args...: one CUDA run, its last line into the summary
    local name=$1; shift
    "$bin/train_mnist" --device cuda --data-dir "$data" --log "$out/$name.jsonl" "$@" >"$out/train-$name.txt" 2>&1
    row "train $name" "exit $? $(last "$out/train-$name.txt")"
  }
  t mlp --model mlp --epochs 3
  t cnn --model cnn --epochs 15 --save "$out/cnn.safetensors"
  t cnn-bn-dropout --model cnn --norm batch --dropout 0.05 --epochs 15
  "$bin/train_mnist" --device cpu --data-dir "$data" --model mlp --epochs 1 >"$out/epoch-cpu.txt" 2>&1
  "$bin/train_mnist" --device cuda --data-dir "$data" --model mlp --epochs 1 >"$out/epoch-gpu.txt" 2>&1
  row "mlp 1 epoch CPU ($(nproc) cores)" "$(grep '^epoch 1' "$out/epoch-cpu.txt" | grep -o '[0-9.]*s [0-9]* img/s')"
  row "mlp 1 epoch GPU" "$(grep '^epoch 1' "$out/epoch-gpu.txt" | grep -o '[0-9.]*s [0-9]* img/s')"
fi
if has resume; then
  KILN_DEVICE=cuda KILN_BIN=$bin KILN_TEST_DATA=$here/tests/data bash "$here/tests/cli/resume.sh" >"$out/resume-cuda.txt" 2>&1
  row "kill-and-resume on CUDA" "exit $? $(last "$out/resume-cuda.txt")"
fi
if has interop; then
  [ -f "$out/cnn.safetensors" ] || "$bin/train_mnist" --device cuda --data-dir "$data" --model cnn --epochs 1 \
    --save "$out/cnn.safetensors" >/dev/null 2>&1
  "$py" "$here/scripts/check_pytorch_interop.py" "$out/cnn.safetensors" --kiln-eval "$bin/kiln_eval" \
    --data-dir "$data" >"$out/interop.txt" 2>&1
  row "PyTorch interop (cnn)" "exit $? $(last "$out/interop.txt")"
fi
if has tta; then
  KILN_BIN=$bin DATA_DIR=$data bash "$here/scripts/time_to_acc.sh" 5 >"$out/tta.txt" 2>&1
  row "time to 99% (5 seeds)" "$(last "$out/tta.txt")"
fi
if has catalogue; then  # the experiment catalogue on the GPU (docs/EXPERIMENTS.md), resumable
  KILN_BIN=$bin KILN_SRC=$here bash "$here/scripts/catalogue.sh" "$here/catalogue" --budget "${CATALOGUE_BUDGET:-480}" \
    -- --device cuda --data-dir "$data" >"$out/catalogue.txt" 2>&1
  rc=$?
  tar -C "$here" -czf "$out/catalogue.tgz" catalogue
  row "experiment catalogue" "exit $rc (3: budget spent, run the step again to continue)"
fi
if has sanitize; then
  # ConvLimitGpu allocates 32 GiB at the 2^31 index limit: far too slow under the tools.
  for tool in memcheck racecheck initcheck synccheck; do
    compute-sanitizer --tool "$tool" --error-exitcode 9 "$bin/kiln_tests" --gtest_filter='*Gpu*:-ConvLimitGpu.*' \
      --gtest_brief=1 >"$out/sanitize-$tool.txt" 2>&1
    rc=$?
    row "compute-sanitizer $tool" "exit $rc; $(grep -c 'ERROR SUMMARY: 0 errors' "$out/sanitize-$tool.txt") clean summaries"
  done
fi
if has bench; then
  for b in "$bin"/bench_*; do
    "$b" --benchmark_min_time=0.2 --benchmark_out="$out/$(basename "$b").json" --benchmark_out_format=json \
      >"$out/$(basename "$b").txt" 2>&1
    row "$(basename "$b")" "exit $? ($(grep -c . "$out/$(basename "$b").txt") lines)"
  done
fi
if has perf; then  # kiln vs PyTorch side by side (docs/PERFORMANCE.md)
  KILN_BENCH_TRAIN=$bin/bench_train OUT=$out bash "$here/scripts/bench_compare.sh" "$out" >"$out/perf.txt" 2>&1
  row "bench_compare (kiln vs PyTorch)" "exit $?"
  tail -12 "$out/perf.txt"
fi
echo "---- summary ----"
cat "$summary"
RUN
chmod +x "$out/run.sh"
du -sh "$out"
