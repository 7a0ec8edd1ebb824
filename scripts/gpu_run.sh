#!/usr/bin/env bash
# (scripts/gpu_run.sh, copied into the bundle as run.sh by scripts/gpu_bundle.sh.)
# Runs the GPU checks of the issues on the device machine. Logs go to ${KILN_LOG_DIR:-log}
# beside this script (bundle/log); ${OUT:-out} beside it (bundle/out) gets two files only, summary.txt and logs.tgz (the logs, the catalogue's
# directory and checkpoints), rewritten every 20 s and at the end, so a call killed at its limit
# still brings back what was done (the device tool returns at most 8 files from $OUT). Each
# summary row is printed as it is written, and the table again last. The libraries are checked
# first: one that no binary finds stops the run at once. Steps, in priority order (default: all):
#   tests      the GPU gtests (*Gpu*; the CPU tests are CI's) + the train_mnist CLI test on CUDA
#   train      mlp 3 epochs (>= 98%), cnn 15 epochs (>= 99.0%), cnn + BN + dropout 0.05 15 epochs
#              (>= 99.4%)
#   interop    PyTorch loads the cnn checkpoint and matches kiln's logits (rtol 1e-4)
#   memcheck racecheck
#              compute-sanitizer over the GPU gtests, one tool per step ("sanitize": these two
#              and initcheck, synccheck below)
#   bench      every bench_* binary (kernels vs cuDNN/cuBLAS, copy bandwidth, optimizer floor);
#              KILN_BENCH="conv norm ..." runs those (bench_conv, bench_norm, ...) in that order
#   epoch      one mlp epoch on GPU vs CPU (epoch time)
#   profile    ncu: the kernels of ~7 training steps of the default cnn, time per kernel summed
#   resume     kill-and-resume on CUDA in --deterministic mode (tests/cli/resume.sh)
#   initcheck synccheck
#              the other two compute-sanitizer tools, as memcheck
#   tta        time to 99% test accuracy, 5 seeds (scripts/time_to_acc.sh)
#   perf       bench_train vs PyTorch (scripts/bench_compare.sh)
#   catalogue  experiments/*.yaml on the GPU (scripts/catalogue.sh; resumes while the machine
#              stays warm), KILN_CATALOGUE_WORKERS processes at once (default 4: catalogue.sh
#              --workers; they share the GPU, what that gains is not measured yet)
# Exit status: 1 when a row reports a failure (listed last), else 0; 2 for an unknown step.
# The whole run stops before KILN_DEADLINE seconds (default 540, under a 600 s device call):
# each step gets min(its budget, the time left - 20 s) and is killed past it ("TIMED OUT" in
# the summary); steps with under 30 s left are skipped and listed, so a second call can name
# them. Budgets: KILN_BUDGET_<step>=SECONDS overrides one.
# KILN_CONCURRENT="tests train memcheck ...": those of the selected steps start together first
# (each under its own budget; a GPU has room for all of them, and the sanitizers are CPU-bound);
# the other steps run one by one once all of those have ended, so timings see a quiet machine.
# Default: the correctness steps (tests train memcheck racecheck initcheck synccheck resume), as
# the H200 session ran them; KILN_CONCURRENT= (empty) runs every step alone, in order.
set -u
start=$(date +%s)  # the deadline counts from here (the library search below takes seconds)
here=$(cd "$(dirname "$0")" && pwd)
out=${KILN_LOG_DIR:-$here/log}
dest=${OUT:-$here/out}
mkdir -p "$out" "$dest"
# CUDA libraries: the toolkit's first, then any folder of a PyTorch venv's nvidia wheels
# that holds a shared library (cuDNN may be there only: /opt/torch/.venv/lib/python3.12/
# site-packages/nvidia/cudnn/lib, or nvidia/cu13/lib in the CUDA 13 wheels).
extra=$(find /opt/torch /usr/local/lib/python3* -maxdepth 10 -path '*nvidia*' -name 'lib*.so*' \
          -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
# Only kiln's binaries see that path (through the wrappers in $here/.wbin, which exec them: same
# pid): PyTorch must load its own wheels' cuDNN/cuBLAS, not an older toolkit copy found first.
kiln_ld=$(printf '%s' "$here/lib:/usr/local/cuda/lib64:${extra}${LD_LIBRARY_PATH:-}" | sed 's/::*/:/g; s/:$//')
# (no empty entry: an empty one is the current directory)
py=$(ls /opt/torch/.venv/bin/python3 /opt/torch/bin/python3 2>/dev/null | head -1)
[ -n "$py" ] || py=$(command -v python3)
bin=$here/.wbin
if [ "${1:-}" != "--step" ]; then
  rm -rf "$bin" && mkdir -p "$bin"
  for b in "$here"/bin/*; do
    printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' "$kiln_ld" "$b" >"$bin/$(basename "$b")"
    chmod +x "$bin/$(basename "$b")"
  done
fi
# The unit tests read the MNIST subset from here (the build machine's path does not exist).
export KILN_TEST_DATA=$here/tests/data
data=$here/data
summary=$out/summary.txt
# A row that reports a failure (a non-zero exit, a target not met, a timeout, a missing library,
# a GPU test skipped on the GPU) is also listed in failed.txt: run.sh then exits 1.
row() {
  printf '%-38s %s\n' "$1" "$2" | tee -a "$summary"
  case "$2" in
    *"exit "[1-9]*|*"NOT MET"*|*"TIMED OUT"*|*MISSING*|*SKIPPED*|*"tests passed: 0") echo "$1" >>"$out/failed.txt" ;;
  esac
}
last() { tail -1 "$1" 2>/dev/null; }
gpu_tests='*Gpu*:CublasApi.*:*ShapeCheck.*:-*WithoutGpu*'  # (the one CPU test named 'without a GPU'
# skips where one answers; CublasApi: the dlopen'ed cuBLAS makes, sets and destroys a handle on
# the device; *ShapeCheck: the launchers' refusals, checked on a device where there is one)
# Under compute-sanitizer: ConvLimitGpu allocates 32 GiB at the 2^31 index limit (far too slow
# there) and the MatchesCudnn cases mostly instrument cuDNN's own algorithm search (kiln's
# kernels run in MatchesReference too); the trainer, graph and LR-finder runs go last, so a
# timeout still leaves the kernels' verdict.
# StepGraphGpu.FailedCapture* is left out: it makes a CUDA API call fail on purpose (a cudaMalloc
# during capture), which memcheck counts as 3 errors; it runs in the plain gtests. So are the
# *LaunchErrorGpu* tests (a cooperative launch too large to fit, on purpose), and
# BufferGpu.FailedDeviceAllocation* (a cudaMalloc of 2^50 bytes, failed on purpose).
sanitize_models='TrainerGpu.*:StepGraphGpu.*:LrFinderGpu.*:FusionModelGpu.*'
sanitize_kernels="*Gpu*:-*WithoutGpu*:ConvLimitGpu.*:*MatchesCudnn*:*LaunchErrorGpu*:BufferGpu.FailedDeviceAllocation*:$sanitize_models"
sanitize_models_only="$sanitize_models:-StepGraphGpu.FailedCapture*"
tool_summary='^========= (ERROR|RACECHECK) SUMMARY'  # the line a sanitizer run that finished ends with

step_tests() {
  "$bin/kiln_tests" --gtest_filter="$gpu_tests" --gtest_brief=1 >"$out/tests-full.txt" 2>&1
  local rc=$?
  tail -40 "$out/tests-full.txt" >"$out/tests.txt"
  row "gtests (GPU)" "exit $rc; $(grep -E '^\[  PASSED|^\[  FAILED  \] [0-9]|SKIPPED \]' "$out/tests-full.txt" | tr '\n' ' ')"
  KILN_BIN=$bin KILN_TEST_DATA=$here/tests/data KILN_SRC=$here bash "$here/tests/cli/train_mnist.sh" >"$out/cli.txt" 2>&1
  row "cli train_mnist test" "exit $?"
}
t() {  # name, target test_acc, args...: one CUDA training run, its last line and verdict
  local name=$1 target=$2; shift 2
  "$bin/train_mnist" --device cuda --data-dir "$data" --log "$out/$name.jsonl" "$@" >"$out/train-$name.txt" 2>&1
  local rc=$? line best verdict
  line=$(last "$out/train-$name.txt")
  # "reaches X within N epochs": the best epoch's test accuracy (the JSONL has one per epoch)
  best=$(grep -o '"test_acc":[0-9.]*' "$out/$name.jsonl" 2>/dev/null | cut -d: -f2 | sort -g | tail -1)
  verdict=$(awk -v a="${best:-0}" -v t="$target" 'BEGIN { print (a >= t) ? "MET" : "NOT MET" }')
  row "train $name" "exit $rc $line; best epoch test_acc=${best:--} (target >= $target: $verdict)"
}
step_train() {  # the three runs at once (each is far from filling the GPU)
  t mlp 0.98 --model mlp --epochs 3 &
  t cnn 0.99 --model cnn --epochs 15 --save "$out/cnn.safetensors" &
  t cnn-bn-dropout 0.994 --model cnn --norm batch --dropout 0.05 --epochs 15 &
  wait
}
step_epoch() {  # apart from train: timings want a GPU (and CPU) that nothing else is using
  "$bin/train_mnist" --device cuda --data-dir "$data" --model mlp --epochs 1 >"$out/epoch-gpu.txt" 2>&1
  row "mlp 1 epoch GPU" "exit $? $(grep '^epoch 1' "$out/epoch-gpu.txt" | grep -o '[0-9.]*s [0-9]* img/s')"
  "$bin/train_mnist" --device cpu --data-dir "$data" --model mlp --epochs 1 >"$out/epoch-cpu.txt" 2>&1
  row "mlp 1 epoch CPU ($(nproc) cores)" "exit $? $(grep '^epoch 1' "$out/epoch-cpu.txt" | grep -o '[0-9.]*s [0-9]* img/s')"
}
step_interop() {
  [ -f "$out/cnn.safetensors" ] || "$bin/train_mnist" --device cuda --data-dir "$data" --model cnn --epochs 1 \
    --save "$out/cnn.safetensors" >/dev/null 2>&1
  "$py" "$here/scripts/check_pytorch_interop.py" "$out/cnn.safetensors" --kiln-eval "$bin/kiln_eval" \
    --data-dir "$data" >"$out/interop.txt" 2>&1
  row "PyTorch interop (cnn)" "exit $? $(last "$out/interop.txt")"
}
sanitize() {  # kernel tests first, then the whole-model runs (slowest under the tools)
  local part filter shards i rc
  # KILN_SANITIZE_PARTS picks the parts ("models" alone reruns those); KILN_SANITIZE_MODELS_FILTER
  # and KILN_SANITIZE_KERNELS_FILTER narrow a part to some tests (gtest filters: e.g. only the
  # suites whose kernels changed since the last run). The tools are CPU-bound, one core each:
  # KILN_SANITIZE_KERNEL_SHARDS processes share the kernels part (default 1).
  for part in ${KILN_SANITIZE_PARTS:-kernels models}; do
    filter=${KILN_SANITIZE_KERNELS_FILTER:-$sanitize_kernels} shards=${KILN_SANITIZE_KERNEL_SHARDS:-1}
    # the whole-model runs, in KILN_SANITIZE_SHARDS processes at once (gtest's own sharding)
    [ $part = models ] && filter=${KILN_SANITIZE_MODELS_FILTER:-$sanitize_models_only} shards=${KILN_SANITIZE_SHARDS:-1}
    for ((i = 0; i < shards; i++)); do
      GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i LD_LIBRARY_PATH="$kiln_ld" \
        compute-sanitizer --tool "$1" --error-exitcode 9 "$here/bin/kiln_tests" --gtest_filter="$filter" \
        >"$out/sanitize-$1-$part$( [ "$shards" -gt 1 ] && echo "-$i").txt" 2>&1 &
    done
    rc=0
    for ((i = 0; i < shards; i++)); do wait -n || rc=$?; done
    # gVisor machines answer "Device not supported": say so instead of a meaningless exit code.
    if grep -q -m1 "Device not supported" "$out"/sanitize-"$1"-$part*.txt; then
      row "compute-sanitizer $1" "UNSUPPORTED on this machine: $(grep -h -m1 'Device not supported' "$out"/sanitize-"$1"-$part*.txt | head -1)"
      return
    fi
    # with gtest's count of tests passed: a filter that matches nothing also ends "0 errors"
    row "compute-sanitizer $1 ($part$( [ "$shards" -gt 1 ] && echo ", $shards shards"))" \
      "exit $rc; $(grep -h -m1 -E "$tool_summary" "$out"/sanitize-"$1"-$part*.txt | sort | uniq -c | sed 's/^ *//; s/^1 //' | paste -sd ';' -); tests passed: $(grep -h -o -E '^\[  PASSED  \] [0-9]+' "$out"/sanitize-"$1"-$part*.txt | awk '{n += $NF} END {print n + 0}')"
  done
}
step_memcheck() { sanitize memcheck; }
step_racecheck() { sanitize racecheck; }
step_initcheck() { sanitize initcheck; }
step_synccheck() { sanitize synccheck; }
step_profile() {  # where a cnn training step's GPU time goes: ncu's kernel durations, summed
  LD_LIBRARY_PATH="$kiln_ld" ncu --metrics gpu__time_duration.sum --launch-skip 150 --launch-count 400 \
    --print-summary per-kernel "$here/bin/train_mnist" --device cuda --data-dir "$data" --train-limit 12800 \
    --test-limit 1000 --epochs 1 --batch-size 128 >"$out/ncu-cnn.txt" 2>&1
  local rc=$?
  python3 "$here/scripts/ncu_summary.py" "$out/ncu-cnn.txt" >"$out/profile.txt" 2>&1
  row "ncu profile (cnn, batch 128)" "exit $rc; $(sed -n 2p "$out/profile.txt")"
}
step_bench() {  # medians of 3 short repetitions; bench_summary.py prints the issues' ratios
  local names=() n b
  if [ -n "${KILN_BENCH:-}" ]; then  # those binaries, in that order (read -a: no glob expansion)
    read -r -a names <<<"$KILN_BENCH"
    for n in "${!names[@]}"; do names[n]=$bin/bench_${names[n]}; done
  else
    names=("$bin"/bench_*)
  fi
  for b in "${names[@]}"; do
    case $(basename "$b") in  # perf runs bench_train next to PyTorch; bench_cpu is the CPU path's
      bench_train | bench_cpu)
        [ -n "${KILN_BENCH:-}" ] && row "$(basename "$b")" "not run by this step (perf runs bench_train)"
        continue ;;
    esac
    [ -x "$b" ] || { row "$(basename "$b")" "MISSING from the bundle"; continue; }
    "$b" --benchmark_min_time=0.01 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
      --benchmark_out="$out/$(basename "$b").json" --benchmark_out_format=json >"$out/$(basename "$b").txt" 2>&1
    row "$(basename "$b")" "exit $? ($(grep -c . "$out/$(basename "$b").txt") lines)"
  done
  python3 "$here/scripts/bench_summary.py" "$out" >"$out/bench_summary.txt" 2>&1
  row "bench_summary.py" "exit $? (bench_summary.txt, printed below)"
}
step_resume() {
  KILN_DEVICE=cuda KILN_BIN=$bin KILN_TEST_DATA=$here/tests/data bash "$here/tests/cli/resume.sh" >"$out/resume-cuda.txt" 2>&1
  row "kill-and-resume on CUDA" "exit $? $(last "$out/resume-cuda.txt")"
}
step_tta() {
  KILN_BIN=$bin DATA_DIR=$data bash "$here/scripts/time_to_acc.sh" 5 >"$out/tta.txt" 2>&1
  row "time to 99% (5 seeds)" "$(grep -E '^(target|NOT MET)' "$out/tta.txt" | paste -sd ';' -)"
}
step_perf() {  # kiln vs PyTorch side by side (docs/PERFORMANCE.md)
  KILN_BENCH_TRAIN=$bin/bench_train OUT=$out bash "$here/scripts/bench_compare.sh" "$out" >"$out/perf.txt" 2>&1
  row "bench_compare (kiln vs PyTorch)" "exit $?"
}
step_catalogue() {  # stops itself 20 s before its budget; its directory travels in logs.tgz
  KILN_BIN=$bin KILN_SRC=$here bash "$here/scripts/catalogue.sh" "$here/catalogue" --budget "$(( ${STEP_SECONDS:-480} - 20 ))" \
    --workers "${KILN_CATALOGUE_WORKERS:-4}" -- --device cuda --data-dir "$data" >"$out/catalogue.txt" 2>&1
  local rc=$?
  if [ "$rc" -eq 3 ]; then row "experiment catalogue" "budget spent (status 3): run the step again to continue"
  else row "experiment catalogue" "exit $rc"; fi
}

if [ "${1:-}" = "--step" ]; then  # one step, under the parent's timeout
  "step_$2"
  exit $?
fi

order=(tests train interop memcheck racecheck bench epoch profile resume initcheck synccheck tta perf catalogue)
declare -A budget=([tests]=150 [train]=240 [interop]=60 [memcheck]=120 [racecheck]=150 [bench]=240 [profile]=60
                   [epoch]=90 [resume]=150 [initcheck]=120 [synccheck]=90 [tta]=120 [perf]=240
                   [catalogue]=480)
want=" ${*:-all} "
want=${want/ sanitize / memcheck racecheck initcheck synccheck }
for w in $want ${KILN_CONCURRENT-}; do
  [ "$w" = all ] || [ -n "${budget[$w]:-}" ] || { echo "run.sh: unknown step '$w' (steps: ${order[*]} sanitize all)" >&2; exit 2; }
done
deadline=$(( start + ${KILN_DEADLINE:-540} ))
# A new run's logs only (a warm machine keeps the last call's; the sanitizer rows read
# sanitize-TOOL-PART*.txt). The catalogue's directory is elsewhere, so it still resumes.
case "$out" in /|"$here") echo "run.sh: KILN_LOG_DIR=$out would delete the bundle; name a folder of its own" >&2; exit 2 ;; esac
find "$out" -mindepth 1 -delete
: >"$summary"
# summary.txt and logs.tgz into $dest (each written beside and renamed: a kill never leaves half)
pack() {
  local cat=()
  [ -d "$here/catalogue" ] && cat=(-C "$here" catalogue)
  tar -C "$out" -czf "$dest/.logs.tgz" --exclude=./logs.tgz --exclude=./.logs.tgz --exclude=./summary.txt . \
    "${cat[@]}" 2>/dev/null
  mv -f "$dest/.logs.tgz" "$dest/logs.tgz"
  [ "$summary" -ef "$dest/summary.txt" ] || { cp "$summary" "$dest/.summary.txt" && mv -f "$dest/.summary.txt" "$dest/summary.txt"; }
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$out/gpu.txt" 2>&1
row "device" "$(head -1 "$out/gpu.txt")"
# Every binary's libraries: a missing one stops the run now rather than failing every step after
# it. The cuBLAS that engine/cublas_api.cpp dlopens (libcublas.so.<toolkit major>, through the
# same LD_LIBRARY_PATH) is the one the bench binaries link, so their lines cover it. (Its soname
# cannot be read from the binary: a 15-character literal is built in registers, and kiln_tests
# holds a test's libcublas.so.99.)
for b in "$here"/bin/*; do
  LD_LIBRARY_PATH="$kiln_ld" ldd "$b" 2>&1 | sed "s|^|$(basename "$b"): |"
done | grep -E "not found|cublas|cudnn" >"$out/ldd.txt"
if grep -q "not found" "$out/ldd.txt"; then
  row "libraries" "MISSING: $(grep 'not found' "$out/ldd.txt" | sed 's/^[^:]*: *//; s/^[[:space:]]*//' | sort -u | paste -sd ';' - | sed 's/;/; /g') (ldd.txt); no step run"
  pack
  echo "run.sh: FAILED: libraries"
  exit 1
fi
# The packer: killed at the end, it finishes a tar it has started (the TERM waits for it), so
# the last pack below is the only writer of logs.tgz.
( trap 'kill $! 2>/dev/null; exit 0' TERM; while :; do sleep 20 & wait $!; pack; done ) &
packer=$!
run_step() {  # step seconds: runs it under its budget; a timeout is a row
  local s=$1 secs=$2 t0 rc note f
  t0=$(date +%s)
  STEP_SECONDS=$secs timeout -k 10 "$secs" bash "$here/run.sh" --step "$s"
  rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    note=""
    if [[ " memcheck racecheck initcheck synccheck " == *" $s "* ]]; then  # what the tool saw so far
      for f in "$out"/sanitize-"$s"-*.txt; do
        [ -f "$f" ] || continue
        if grep -q -E "$tool_summary" "$f"; then  # a shard that finished
          note+="; $(basename "$f" .txt): finished, $(grep -m1 -E "$tool_summary" "$f" | sed 's/^========= //')"
        else
          note+="; $(basename "$f" .txt): $(grep -c -E '^========= +(Invalid|Race|Uninitialized|Barrier|Program hit|Error|Warning|Saved host backtrace)' "$f") report lines, last test $(grep -o 'RUN *\] [^ ]*' "$f" | tail -1 | awk '{print $NF}')"
        fi
      done
    fi
    row "$s" "TIMED OUT after ${secs}s (partial logs in $out)$note"
  fi
  echo "step $s: exit $rc, $(( $(date +%s) - t0 ))s" >>"$out/steps.txt"
}
selected() { [[ "$want" == *" all "* || "$want" == *" $1 "* ]]; }
fits() {  # step: secs = its budget, or less when the deadline is nearer; under 30 it is skipped
  local left b
  left=$(( deadline - $(date +%s) - 20 ))
  b=$(eval "echo \${KILN_BUDGET_$1:-${budget[$1]}}")
  secs=$(( b < left ? b : left ))
  [ "$secs" -ge 30 ] || { skipped+=("$1"); return 1; }
}
skipped=()
together=" ${KILN_CONCURRENT-tests train memcheck racecheck initcheck synccheck resume} "
group=()
for s in "${order[@]}"; do  # the concurrent group first (the deadline applies to each)
  [[ "$together" == *" $s "* ]] && selected "$s" && fits "$s" || continue
  run_step "$s" "$secs" &
  group+=($!)
done
for p in "${group[@]}"; do wait "$p"; done  # (not a bare wait: the packer runs till the end)
for s in "${order[@]}"; do
  [[ "$together" != *" $s "* ]] && selected "$s" && fits "$s" || continue
  run_step "$s" "$secs"
done
[ ${#skipped[@]} -eq 0 ] || row "not run (no time left)" "${skipped[*]}"
kill "$packer" 2>/dev/null
wait "$packer" 2>/dev/null
pack
[ -f "$out/bench_summary.txt" ] && cat "$out/bench_summary.txt"
[ -f "$out/perf.txt" ] && tail -12 "$out/perf.txt"
echo "---- summary ----"
cat "$summary"
if [ -s "$out/failed.txt" ]; then
  echo "run.sh: FAILED: $(sort -u "$out/failed.txt" | paste -sd, - | sed 's/,/, /g')"
  exit 1
fi
