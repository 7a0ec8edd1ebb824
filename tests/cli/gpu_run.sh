#!/usr/bin/env bash
# scripts/gpu_run.sh (the bundle's run.sh) on stub binaries, so its scheduling is known to work
# before a GPU session spends device minutes on it: the device row, the accuracy verdicts (MET /
# NOT MET from the best epoch in the JSONL), a sanitizer step killed at its budget with the
# reports seen so far counted, the steps that no longer fit listed as not run, step selection,
# an unknown step (exit 2), exit 1 when a row fails, what each program sees (the bundle's
# test data; the library path for kiln's binaries but not PyTorch's), a missing library stopping
# the run before any step, and $OUT holding summary.txt and logs.tgz alone (the device tool
# returns 8 files). No GPU, compute-sanitizer or PyTorch needed.
set -uo pipefail
: "${KILN_SRC:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
b=$tmp/bundle
mkdir -p "$b/bin" "$b/lib" "$b/data" "$b/tests/cli" "$b/tests/data" "$b/scripts" "$tmp/path"
cp "$KILN_SRC/scripts/gpu_run.sh" "$b/run.sh"
stub() {  # stub PATH BODY: an executable bash script
  printf '#!/usr/bin/env bash\n%s\n' "$2" >"$1"
  chmod +x "$1"
}
stub "$b/bin/kiln_tests" 'echo "data=$KILN_TEST_DATA ld=$LD_LIBRARY_PATH" >>"$OUT/kiln_tests.env"
echo "[==========] 3 tests ran."; echo "[  PASSED  ] 3 tests."'
# train_mnist: test_acc by model (mlp 0.981 meets 0.98; cnn peaks at 0.9885, under 0.99)
stub "$b/bin/train_mnist" '
log=""; model=cnn; dev=cuda
while [ $# -gt 0 ]; do case $1 in --log) log=$2; shift;; --model) model=$2; shift;; --device) dev=$2; shift;; esac; shift; done
acc=0.9885; [ $model = mlp ] && acc=0.981
[ -n "$log" ] && { echo "{\"type\":\"epoch\",\"epoch\":1,\"test_acc\":0.97}"; echo "{\"type\":\"epoch\",\"epoch\":2,\"test_acc\":$acc}"; echo "{\"type\":\"epoch\",\"epoch\":3,\"test_acc\":0.96}"; } >"$log"
echo "epoch 1: train_loss=0.1 test_acc=$acc 1.5s 40000 img/s"
echo "test_acc=$acc test_loss=0.05 seconds=1.50"'
stub "$b/bin/kiln_eval" 'exit 0'
stub "$b/bin/bench_copy" 'echo "BM_Copy 1 ms"; for a; do case $a in --benchmark_out=*) echo "{}" >"${a#*=}";; esac; done'
stub "$b/tests/cli/train_mnist.sh" "[ \"\${KILN_SRC:-}\" = \"$b\" ]"  # (its kiln_eval check reads the bundle's data)
stub "$b/tests/cli/resume.sh" 'echo "PASS resume"'
stub "$b/scripts/check_pytorch_interop.py" 'echo "ld=${LD_LIBRARY_PATH:-}" >"$OUT/python.env"; echo "max relative difference 3e-06: OK"'
stub "$b/scripts/bench_summary.py" 'echo "bench summary: 1 file"'
stub "$b/scripts/ncu_summary.py" 'echo "400 launches"; echo "top: bias_grad_kernel (grid 16x1x1) 30.0% of the time"'
stub "$tmp/path/ncu" 'echo "ncu $*" >"$OUT/ncu.args"; echo "==PROF== done"'
stub "$b/scripts/bench_compare.sh" 'echo bench_compare.sh done'
stub "$b/scripts/catalogue.sh" 'echo "$*" >"$OUT/catalogue.args"; mkdir -p "$1" && echo done >"$1/status"; echo catalogue.sh done'
stub "$b/scripts/time_to_acc.sh" 'echo "seed 5: test_acc=0.99 seconds=9 reached=yes"; echo "target 0.99 reached by 5/5 seeds: mean 9.000 s (min 9, max 9)"'
stub "$tmp/path/nvidia-smi" 'echo "NVIDIA H100 80GB HBM3, 550.54, 81559 MiB"'
stub "$tmp/path/python3" 'exec bash "$@"'  # the stub .py files are bash
# ldd: nothing missing, unless KILN_STUB_LDD_MISSING names a library
stub "$tmp/path/ldd" '[ -z "${KILN_STUB_LDD_MISSING:-}" ] || printf "\t%s => not found\n" "$KILN_STUB_LDD_MISSING"'
# compute-sanitizer: racecheck reports two races, then hangs (killed at its budget); with
# KILN_STUB_WAIT set, memcheck ends only once racecheck has started (so only when they run together)
stub "$tmp/path/compute-sanitizer" '
if [ "$2" = memcheck ] && [ -n "${KILN_STUB_WAIT:-}" ]; then
  for i in $(seq 20); do [ -f "$OUT/racecheck.started" ] && break; sleep 1; done
  [ -f "$OUT/racecheck.started" ] || { echo "racecheck never started"; exit 5; }
fi
echo "$6 shard ${GTEST_SHARD_INDEX:-}/${GTEST_TOTAL_SHARDS:-}"
if [ "$2" = racecheck ] && [ "${GTEST_SHARD_INDEX:-}" = 1 ] && [ "${GTEST_TOTAL_SHARDS:-}" = 3 ]; then
  touch "$OUT/racecheck.started"; echo "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)"; exit 0
fi
if [ "$2" = racecheck ]; then
  touch "$OUT/racecheck.started"; echo "[ RUN      ] ConvGpu.MatchesReference/K3"; echo "========= Race reported between Write access at 0x10"
  echo "========= Race reported between Read access at 0x20"; echo "[ RUN      ] PoolGpu.MatchesReference/K2"; sleep 300
fi
echo "[  PASSED  ] ${KILN_STUB_PASSED:-3} tests."; echo "========= ERROR SUMMARY: 0 errors"'
export PATH="$tmp/path:$PATH"
# The logs beside the summary (KILN_LOG_DIR = $OUT), as before logs.tgz; section 5 separates them.
run_sh() { KILN_LOG_DIR=$OUT bash "$b/run.sh" "$@"; }
fail=0
expect() {  # expect FILE PATTERN WHAT
  grep -Eq -- "$2" "$1" || { echo "FAIL: $3 (no /$2/ in $1)"; sed 's/^/    /' "$1"; fail=1; }
}

# 1. Everything, with a deadline that racecheck's hang uses up: steps after it are listed.
OUT=$tmp/out1 KILN_CONCURRENT= KILN_DEADLINE=70 KILN_BUDGET_racecheck=32 LD_LIBRARY_PATH=/outer run_sh >"$tmp/run1.txt" 2>&1
rc=$?
s=$tmp/out1/summary.txt
expect "$s" '^device +NVIDIA H100' "device row"
expect "$s" '^gtests \(GPU\) +exit 0; \[  PASSED  \] 3 tests' "gtest row"
expect "$s" '^train mlp .*best epoch test_acc=0.981 \(target >= 0.98: MET\)' "mlp verdict"
expect "$s" '^train cnn .*best epoch test_acc=0.9885 \(target >= 0.99: NOT MET\)' "cnn verdict (best epoch, not last)"
expect "$s" '^PyTorch interop \(cnn\) +exit 0 max relative difference' "interop row"
expect "$s" '^compute-sanitizer memcheck \(kernels\) +exit 0; ========= ERROR SUMMARY: 0 errors; tests passed: 3$' "memcheck row"
expect "$s" '^cli train_mnist test +exit 0' "cli test row (KILN_SRC is the bundle)"
# the test that fails a CUDA API call on purpose is kept from the tools' whole-model runs
expect "$tmp/out1/sanitize-memcheck-models.txt" '^--gtest_filter=TrainerGpu.*:-StepGraphGpu.FailedCapture\* shard 0/1$' "models filter"
grep -q 'FailedCapture' "$tmp/out1/sanitize-memcheck-kernels.txt" && { echo "FAIL: kernels filter"; fail=1; }
# and the tests that fail a launch on purpose from the kernels' run
expect "$tmp/out1/sanitize-memcheck-kernels.txt" '^--gtest_filter=[^ ]*:-[^ ]*[*]LaunchErrorGpu[*]' "kernels filter leaves out *LaunchErrorGpu*"
expect "$s" '^racecheck +TIMED OUT after 32s.*sanitize-racecheck-kernels: 2 report lines, last test PoolGpu.MatchesReference/K2' "racecheck timeout row"
expect "$s" '^not run \(no time left\) +bench epoch profile resume initcheck synccheck tta perf catalogue$' "not-run row"
expect "$tmp/run1.txt" '^---- summary ----' "summary printed last"
# each row is printed as it is written too (a call killed at its limit still shows them)
[ "$(grep -c '^device  ' "$tmp/run1.txt")" = 2 ] || { echo "FAIL: rows not printed as written"; fail=1; }
# a missed target and a timeout fail the run (exit 1), named last
[ $rc -eq 1 ] || { echo "FAIL: run.sh exited $rc with a target not met and a timeout"; fail=1; }
expect "$tmp/run1.txt" '^run.sh: FAILED: racecheck, train cnn, train cnn-bn-dropout$' "failed rows named"
# kiln's binaries find the bundle's libraries and the bundle's test data; PyTorch gets the
# caller's library path only (its own wheels' cuDNN, not a toolkit copy found first)
expect "$tmp/out1/kiln_tests.env" "^data=$b/tests/data ld=$b/lib:/usr/local/cuda/lib64:.*/outer\$" "kiln_tests environment"
expect "$tmp/out1/python.env" '^ld=/outer$' "python's LD_LIBRARY_PATH"
# without a caller's path, none ends in ':' (an empty entry searches the current directory)
OUT=$tmp/out4 KILN_LOG_DIR=$tmp/out4 KILN_CONCURRENT= KILN_DEADLINE=100 env -u LD_LIBRARY_PATH bash "$b/run.sh" tests >/dev/null 2>&1
grep -q '^data=.* ld=.*[^:]$' "$tmp/out4/kiln_tests.env" && ! grep -q 'ld=.*::' "$tmp/out4/kiln_tests.env" ||
  { echo "FAIL: an empty library path entry"; cat "$tmp/out4/kiln_tests.env"; fail=1; }

# 2. Named steps only, in priority order whatever the order given; sanitize = the four tools.
OUT=$tmp/out2 KILN_CONCURRENT= KILN_DEADLINE=200 run_sh catalogue bench tta profile epoch resume >"$tmp/run2.txt" 2>&1
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: run.sh exited $rc with every row passing"; fail=1; }
s=$tmp/out2/summary.txt
expect "$s" '^bench_copy +exit 0' "bench row"
expect "$s" '^mlp 1 epoch GPU +exit 0 1.5s 40000 img/s' "epoch time row"
expect "$s" '^ncu profile \(cnn, batch 128\) +exit 0; top: bias_grad_kernel' "profile row"
expect "$tmp/out2/ncu.args" 'train_mnist --device cuda .*--batch-size 128' "ncu runs the cnn"
expect "$s" '^bench_summary.py +exit 0' "bench summary row"
expect "$s" '^kill-and-resume on CUDA +exit 0 PASS resume' "resume row"
expect "$s" '^experiment catalogue +exit 0' "catalogue row"
expect "$tmp/out2/catalogue.args" ' --workers 4 -- --device cuda ' "the catalogue's default workers"
expect "$s" '^time to 99% \(5 seeds\) +target 0.99 reached by 5/5 seeds: mean 9.000 s' "time-to-accuracy row"
# (listed into a file first: under pipefail, grep -q quitting early could fail tar with EPIPE)
tar -tzf "$tmp/out2/logs.tgz" > "$tmp/list2" && grep -q '^catalogue/status$' "$tmp/list2" ||
  { echo "FAIL: no catalogue in logs.tgz"; fail=1; }
grep -q '^train\|^gtests' "$s" && { echo "FAIL: unrequested steps ran"; fail=1; }
[ "$(grep -o '^step [a-z]*' "$tmp/out2/steps.txt" | tr '\n' ' ')" = "step bench step epoch step profile step resume step tta step catalogue " ] ||
  { echo "FAIL: step order"; cat "$tmp/out2/steps.txt"; fail=1; }

# The default concurrent group (unset KILN_CONCURRENT): the correctness steps start together.
OUT=$tmp/out7 KILN_STUB_WAIT=1 KILN_DEADLINE=100 KILN_BUDGET_racecheck=32 run_sh memcheck racecheck >/dev/null 2>&1
expect "$tmp/out7/summary.txt" '^compute-sanitizer memcheck \(models\) +exit 0' "memcheck and racecheck together by default"

# 3. An unknown step is a usage error before anything runs.
OUT=$tmp/out3 run_sh tests bogus >"$tmp/run3.txt" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "unknown step 'bogus'" "$tmp/run3.txt" && [ ! -s "$tmp/out3/summary.txt" ] ||
  { echo "FAIL: unknown step rc=$rc"; cat "$tmp/run3.txt"; fail=1; }
# 4. KILN_CONCURRENT: those steps start together (memcheck waits for racecheck to start, so run
# one after the other it would fail); the rest (bench) only once all of them have ended.
OUT=$tmp/out5 KILN_STUB_WAIT=1 KILN_SANITIZE_SHARDS=3 KILN_SANITIZE_PARTS=models \
  KILN_SANITIZE_MODELS_FILTER=TrainerGpu.A:TrainerGpu.B KILN_CONCURRENT="tests memcheck racecheck" KILN_DEADLINE=120 \
  KILN_BUDGET_racecheck=32 run_sh bench racecheck memcheck tests >"$tmp/run5.txt" 2>&1
rc=$?
s=$tmp/out5/summary.txt
expect "$s" '^compute-sanitizer memcheck \(models, 3 shards\) +exit 0; 3 ========= ERROR SUMMARY: 0 errors; tests passed: 9$' "concurrent memcheck"
grep -q '(kernels)' "$s" && { echo "FAIL: KILN_SANITIZE_PARTS=models ran the kernels part"; fail=1; }
expect "$tmp/out5/sanitize-memcheck-models-1.txt" '^--gtest_filter=TrainerGpu.A:TrainerGpu.B shard 1/3$' "models filter override"
for i in 0 1 2; do expect "$tmp/out5/sanitize-memcheck-models-$i.txt" "shard $i/3\$" "shard $i"; done
expect "$s" '^racecheck +TIMED OUT after 32s.*sanitize-racecheck-models-1: finished, RACECHECK SUMMARY: 0 hazards displayed.*sanitize-racecheck-models-2: 2 report lines' "concurrent racecheck timeout, a shard finished"
expect "$s" '^gtests \(GPU\) +exit 0' "concurrent gtests"
expect "$s" '^bench_copy +exit 0' "bench after the group"
[ "$(grep -o '^step [a-z]*' "$tmp/out5/steps.txt" | tail -2 | tr '\n' ' ')" = "step racecheck step bench " ] ||
  { echo "FAIL: bench did not wait for the concurrent steps"; cat "$tmp/out5/steps.txt"; fail=1; }
expect "$tmp/run5.txt" '^run.sh: FAILED: racecheck$' "concurrent failure named"
[ $rc -eq 1 ] || { echo "FAIL: run.sh exited $rc with a concurrent step timed out"; fail=1; }
OUT=$tmp/out8 KILN_SANITIZE_PARTS=kernels KILN_SANITIZE_KERNELS_FILTER='*ConvGpu*:*PoolGpu*' KILN_CONCURRENT= \
  run_sh initcheck >"$tmp/run8.txt" 2>&1
expect "$tmp/out8/sanitize-initcheck-kernels.txt" '^--gtest_filter=\*ConvGpu\*:\*PoolGpu\* shard 0/1$' "kernels filter override"
# the kernels part in KILN_SANITIZE_KERNEL_SHARDS processes
OUT=$tmp/out11 KILN_SANITIZE_PARTS=kernels KILN_SANITIZE_KERNEL_SHARDS=2 KILN_CONCURRENT= run_sh initcheck >/dev/null 2>&1
expect "$tmp/out11/summary.txt" '^compute-sanitizer initcheck \(kernels, 2 shards\) +exit 0; 2 ========= ERROR SUMMARY: 0 errors; tests passed: 6$' "kernel shards"
for i in 0 1; do expect "$tmp/out11/sanitize-initcheck-kernels-$i.txt" "shard $i/2\$" "kernel shard $i"; done
OUT=$tmp/out6 KILN_CONCURRENT="tests bogus" run_sh tests >"$tmp/run6.txt" 2>&1
[ $? -eq 2 ] && grep -q "unknown step 'bogus'" "$tmp/run6.txt" ||
  { echo "FAIL: an unknown KILN_CONCURRENT step"; cat "$tmp/run6.txt"; fail=1; }
# KILN_BENCH: those benchmarks only, in that order; a name not in the bundle is a failed row.
cp "$b/bin/bench_copy" "$b/bin/bench_zz"
# A glob is not expanded (bench_c* would match files here); bench_train is named, not run.
touch "$tmp/bench_cA" "$tmp/bench_cB"
(cd "$tmp" && OUT=$tmp/out7 KILN_CONCURRENT= KILN_BENCH="zz copy nope c* train" run_sh bench >"$tmp/run7.txt" 2>&1)
rc=$?
[ "$(grep -o '^bench_[a-z*]*' "$tmp/out7/summary.txt" | tr '\n' ' ')" = "bench_zz bench_copy bench_nope bench_c* bench_train bench_summary " ] ||
  { echo "FAIL: KILN_BENCH order"; cat "$tmp/out7/summary.txt"; fail=1; }
expect "$tmp/out7/summary.txt" '^bench_nope +MISSING from the bundle' "a bench name not in the bundle"
expect "$tmp/out7/summary.txt" '^bench_train +not run by this step' "bench_train named in KILN_BENCH"
[ $rc -eq 1 ] || { echo "FAIL: run.sh exited $rc with a missing benchmark"; fail=1; }

# 5. On the device: logs in KILN_LOG_DIR, $OUT gets summary.txt and logs.tgz alone.
OUT=$tmp/dest9 KILN_LOG_DIR=$tmp/log9 KILN_CONCURRENT= KILN_DEADLINE=100 bash "$b/run.sh" tests >"$tmp/run9.txt" 2>&1
[ "$(ls "$tmp/dest9" | grep -v '^kiln_tests.env$' | tr '\n' ' ')" = "logs.tgz summary.txt " ] ||
  { echo "FAIL: \$OUT holds more than summary.txt and logs.tgz"; ls -a "$tmp/dest9"; fail=1; }
tar -tzf "$tmp/dest9/logs.tgz" > "$tmp/list9" && grep -q '^./tests-full.txt$' "$tmp/list9" &&
  [ -f "$tmp/log9/tests-full.txt" ] || { echo "FAIL: logs.tgz"; cat "$tmp/list9"; fail=1; }
expect "$tmp/dest9/summary.txt" '^gtests \(GPU\) +exit 0' "summary.txt in \$OUT"
# 6. A library no binary finds stops the run before any step, named.
OUT=$tmp/dest10 KILN_LOG_DIR=$tmp/log10 KILN_STUB_LDD_MISSING=libcudnn.so.9 bash "$b/run.sh" tests train >"$tmp/run10.txt" 2>&1
rc=$?
[ $rc -eq 1 ] && [ ! -e "$tmp/log10/steps.txt" ] && [ ! -e "$tmp/dest10/kiln_tests.env" ] ||
  { echo "FAIL: a missing library did not stop the run (rc $rc)"; cat "$tmp/run10.txt"; fail=1; }
expect "$tmp/dest10/summary.txt" '^libraries +MISSING: libcudnn.so.9 => not found \(ldd.txt\); no step run' "missing library row"
# 7. A sanitizer run whose filter matched no test fails (it also ends "0 errors"); a second run in
# the same log folder counts its own shard files only (the first one's two are deleted).
OUT=$tmp/dest13 KILN_LOG_DIR=$tmp/log13 KILN_SANITIZE_PARTS=kernels KILN_SANITIZE_KERNEL_SHARDS=2 KILN_CONCURRENT= \
  bash "$b/run.sh" initcheck >/dev/null 2>&1
OUT=$tmp/dest13 KILN_LOG_DIR=$tmp/log13 KILN_SANITIZE_PARTS=kernels KILN_STUB_PASSED=0 KILN_CONCURRENT= \
  bash "$b/run.sh" initcheck >"$tmp/run13.txt" 2>&1
rc=$?
expect "$tmp/dest13/summary.txt" '^compute-sanitizer initcheck \(kernels\) +exit 0; ========= ERROR SUMMARY: 0 errors; tests passed: 0$' "a sanitizer run of no tests, alone"
[ $rc -eq 1 ] && grep -q '^run.sh: FAILED: compute-sanitizer initcheck (kernels)$' "$tmp/run13.txt" ||
  { echo "FAIL: a sanitizer run of no tests passed (rc $rc)"; cat "$tmp/run13.txt"; fail=1; }
[ $fail -eq 0 ] && echo PASS
exit $fail
