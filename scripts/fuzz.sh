#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DKILN_FUZZ=ON, CPU only, in build-fuzz/) and runs each
# for N seconds (default 60) from its seed corpus in fuzz/corpus/<target>/. New inputs go to a
# scratch corpus under build-fuzz/, never into the repository; crashes are written to
# build-fuzz/artifacts/ and make the script fail.
#   scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v clang++ > /dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)"; exit 1; }
# libFuzzer and the sanitizer runtimes are clang's libclang-rt-dev, a Recommends that an image
# without recommends leaves out (install_deps.sh installs it where apt offers it): without them
# there is nothing to fuzz with, a skip (exit 0: test.sh goes on), not a configure or link error.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
  'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }' > "$probe/t.cpp"
# A compile that fails is clang's own problem (no C++ headers for the GCC it picked): an error,
# not a skip; only the link can lack the runtime.
clang++ -fsanitize=fuzzer,address,undefined -c "$probe/t.cpp" -o "$probe/t.o" 2> "$probe/err" ||
  { echo "fuzz.sh: clang++ cannot compile a fuzz target: $(grep -m1 -i 'error' "$probe/err" || head -1 "$probe/err")"; exit 1; }
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/t.o" -o "$probe/t" 2> "$probe/err"; then
  echo "fuzz.sh: skipped: clang++ cannot link a libFuzzer target (-fsanitize=fuzzer,address,undefined:" \
    "$(grep -m1 -iE 'cannot find|error' "$probe/err" || head -1 "$probe/err")); apt-get install libclang-rt-dev (or libclang-rt-N-dev for clang N)"
  exit 0
fi
build=${KILN_FUZZ_BUILD:-build-fuzz}
gen=()
command -v ninja > /dev/null && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_FUZZ=ON -DKILN_CUDA=OFF -DKILN_BUILD_TESTS=OFF \
  -DKILN_BUILD_APPS=OFF -DKILN_BUILD_BENCHMARKS=OFF > /dev/null
targets=(fuzz_idx fuzz_cifar fuzz_safetensors fuzz_yaml_config fuzz_sweep)
cmake --build "$build" -j "${KILN_JOBS:-$(nproc)}" --target "${targets[@]}"
mkdir -p "$build/artifacts"
status=0
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  mkdir -p "$work"
  echo "== $t (${secs}s)"
  # ASan's leak check is off: a reader that throws mid-parse is expected, and libFuzzer's
  # -rss_limit_mb catches runaway allocation.
  if ! ASAN_OPTIONS=detect_leaks=0 "$build/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
      -max_len=65536 -timeout=10 -print_final_stats=0 -artifact_prefix="$build/artifacts/$t-" \
      "$work" "fuzz/corpus/$t" 2>&1 | tail -4; then
    status=1
    echo "fuzz.sh: $t found a problem; reproduce with $build/fuzz/$t $build/artifacts/$t-*"
  fi
done
exit $status
