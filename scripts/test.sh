#!/usr/bin/env bash
# One command: install dependencies, build, run every test with ctest.
#   1. the `ci` preset (CUDA kernels compiled for sm_90 when nvcc exists; GPU tests skip
#      cleanly without a GPU and run when one answers), or `cpu` without nvcc;
#   2. the `asan` preset (AddressSanitizer + UBSan over the CPU tests), unless KILN_SKIP_ASAN=1;
#      but for three CLI tests the first step ran and whose subject is no kiln C++ code:
#      cli.pytorch (torch's side; it would add three minutes), cli.gpu_run (the bundle script on
#      stub binaries) and cli.plot (plot.py; the runs it plots are cli.sweep's and cli.lr_find's);
#   3. the `emu` preset, unless KILN_SKIP_EMU=1: the CUDA kernels compiled as C++ against the
#      CUDA emulator (tests/cuda_emu) under ASan + UBSan, so every GPU test (named *Gpu*: the
#      ones that touch CUDA skip without a device) runs here too: once with threads resumed in
#      order, once in reverse (a missing barrier changes results; the kernel-level tests, not
#      the whole training runs), with the emulator's own tests and the benchmarks' smoke run;
#      and the kill-and-resume test on the CUDA path. Only the test files that define GPU tests
#      are built there (KILN_GPU_TESTS_ONLY); the CPU tests ran under sanitizers in step 2;
#   4. a short libFuzzer run of each fuzz target (KILN_FUZZ_SECONDS, default 10) when present
#      (fuzz.sh skips where clang cannot link one: no libFuzzer runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
jobs=${KILN_JOBS:-$(nproc)}
preset=cpu
if [ -x /usr/local/cuda/bin/nvcc ] || command -v nvcc >/dev/null 2>&1; then preset=ci; fi
preset=${KILN_PRESET:-$preset}
echo "== build ($preset) [${SECONDS}s]"
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j "$jobs"
echo "== test ($preset) [${SECONDS}s]"
ctest --preset "$preset" -j "$jobs" --output-on-failure
if [ "${KILN_SKIP_ASAN:-0}" != 1 ]; then
  echo "== build (asan) [${SECONDS}s]"
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  echo "== test (asan) [${SECONDS}s]"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --preset asan -j "$jobs" -E '^cli[.](pytorch|gpu_run|plot)$' --output-on-failure
fi
if [ "${KILN_SKIP_EMU:-0}" != 1 ]; then
  echo "== build (emu) [${SECONDS}s]"
  cmake --preset emu -DKILN_GPU_TESTS_ONLY=ON >/dev/null  # only what this stage runs
  cmake --build --preset emu -j "$jobs"
  echo "== test (emu) [${SECONDS}s]"  # the CLI tests would pick the emulated GPU: only resume runs there, below
  ASAN_OPTIONS=detect_leaks=1 ctest --preset emu -j "$jobs" -R 'Gpu|CudaEmu|^bench[.]' --output-on-failure
  echo "== test (emu, GPU tests with threads resumed in reverse order) [${SECONDS}s]"
  # (the kernel-level tests: the whole training runs go through the same kernels, 3.5 min more)
  KILN_EMU_ORDER=reverse ctest --preset emu -j "$jobs" -R 'Gpu|CudaEmu' \
    -E '^(TrainerGpu[.]|StepGraphGpu[.].*GraphsOnMatchesOff)' --output-on-failure
  echo "== test (emu, SIGKILL-and-resume on the CUDA path, --deterministic) [${SECONDS}s]"
  KILN_DEVICE=cuda KILN_RESUME_TRAIN_LIMIT=1200 KILN_RESUME_SIGNAL_EPOCHS=3 ctest --preset emu -R '^cli[.]resume$' --output-on-failure
fi
if [ -x scripts/fuzz.sh ] && [ "${KILN_FUZZ_SECONDS:-10}" != 0 ]; then
  echo "== fuzz (${KILN_FUZZ_SECONDS:-10} s per target) [${SECONDS}s]"
  scripts/fuzz.sh "${KILN_FUZZ_SECONDS:-10}"
fi
echo "== all tests passed [${SECONDS}s]"
