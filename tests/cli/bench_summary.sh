#!/usr/bin/env bash
# scripts/bench_summary.py on hand-made Google Benchmark JSON: the conv ratio is kiln time over
# cuDNN time summed over the layers (not a mean of per-layer ratios), the worst layer is named,
# repetitions' medians win over single runs, and the optimizer's time/floor is 1/floor_frac.
# Also scripts/ncu_summary.py and scripts/bench_table.py (below).
set -euo pipefail
: "${KILN_SRC:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/bench_conv.json" <<'JSON'
{"benchmarks": [
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd/kiln/manual_time", "run_type": "iteration", "real_time": 30.0},
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd/cudnn/manual_time", "run_type": "iteration", "real_time": 10.0},
 {"name": "conv/cnn.2/16->16_k3s1p0_26x26/b128/fwd/kiln/manual_time", "run_type": "iteration", "real_time": 50.0},
 {"name": "conv/cnn.2/16->16_k3s1p0_26x26/b128/fwd/cudnn/manual_time", "run_type": "iteration", "real_time": 90.0},
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd+bwd/kiln/manual_time", "run_type": "iteration", "real_time": 99.0, "kiln/cuDNN": 9.0, "tiles_auto/small": 9.0},
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd+bwd/kiln/manual_time_median", "run_name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd+bwd/kiln/manual_time", "run_type": "aggregate", "aggregate_name": "median", "real_time": 60.0, "kiln/cuDNN": 2.0, "tiles_auto/small": 0.64},
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd+bwd/cudnn/manual_time", "run_type": "iteration", "real_time": 30.0},
 {"name": "conv/cnn.2/16->16_k3s1p0_26x26/b128/fwd+bwd/kiln/manual_time", "run_type": "iteration", "real_time": 100.0, "kiln/cuDNN": 1.25, "tiles_auto/small": 1.0},
 {"name": "conv/cnn.2/16->16_k3s1p0_26x26/b128/fwd+bwd/cudnn/manual_time", "run_type": "iteration", "real_time": 80.0}
]}
JSON
cat > "$tmp/bench_optim.json" <<'JSON'
{"benchmarks": [{"name": "BM_OptimStep/adam/100000000/100/manual_time", "run_type": "iteration", "real_time": 1.0,
  "GB/s": 2800.0, "floor_frac": 0.8, "launches_per_step": 2.0}]}
JSON
cat > "$tmp/bench_norm.json" <<'JSON'
{"benchmarks": [
 {"name": "BM_BatchNormFwdTrain/64/64/56/56/manual_time", "run_type": "iteration", "real_time": 60.0, "GB/s": 1700.0, "frac_copy": 0.41},
 {"name": "BM_BatchNormFwdTrain/persistent/64/64/56/56/manual_time", "run_type": "iteration", "real_time": 0.045, "time_unit": "ms", "GB/s": 2270.0, "frac_copy": 0.54, "persistent_grid": 400},
 {"name": "BM_BatchNormFwdTrain/256/128/1/1/manual_time", "run_type": "iteration", "real_time": 8.0},
 {"name": "BM_BatchNormFwdTrain/persistent/256/128/1/1/manual_time", "run_type": "iteration", "real_time": 8.1, "persistent_grid": 0},
 {"name": "BM_GroupNormFwd/two_pass/8/64/56/56/1/manual_time", "run_type": "iteration", "real_time": 30.0},
 {"name": "BM_BatchNormReluFwdTrain/fused/64/64/56/56/manual_time", "run_type": "iteration", "real_time": 50.0}
]}
JSON
s=$(python3 "$KILN_SRC/scripts/bench_summary.py" "$tmp")
echo "$s"
# fwd: (30 + 50) / (10 + 90) = 0.80; fwd+bwd with the median row: (60 + 100) / (30 + 80) = 1.45
grep -E -q '^  cnn b128 +0[.]80 +- +- +1[.]45 ' <<<"$s" || { echo "FAIL: conv sums"; exit 1; }
# tiles auto/small: the geometric mean of the layers' fwd+bwd ratios (medians win): sqrt(0.64 * 1.0)
grep -E -q '^  cnn b128 +0[.]80 +- +- +1[.]45 +- +- +0[.]80 *$' <<<"$s" || { echo "FAIL: tiles column"; exit 1; }
grep -E -q '^  cnn b128 +0 +1->16_k3s1p0_28x28 +2[.]00 *$' <<<"$s" || { echo "FAIL: worst layer"; exit 1; }
grep -E -q '^  BM_OptimStep/adam/100000000/100 +2800 +1[.]25 +2[.]0 *$' <<<"$s" || { echo "FAIL: optim"; exit 1; }
grep -q '^dropout: no bench_dropout.json' <<<"$s" || { echo "FAIL: missing family"; exit 1; }
# variants against their default row: the persistent batch norm at 45 / 60 = 0.75 (its row in
# ms, the default's in us); one whose persistent_grid is 0 ran the default's kernels; rows without
# a default (group norm's two-pass here, the fused ReLU) are not paired
grep -E -q '^  BM_BatchNormFwdTrain/64/64/56/56 +persistent +60[.]00 +45[.]00 +0[.]75 *$' <<<"$s" ||
  { echo "FAIL: persistent variant"; exit 1; }
grep -E -q '^  BM_BatchNormFwdTrain/256/128/1/1 +persistent +8[.]00 +8[.]10 +[(]not taken[)] *$' <<<"$s" ||
  { echo "FAIL: persistent variant not taken"; exit 1; }
if grep -E -q '^  BM_GroupNormFwd/8/64/56/56/1 +two_pass|^  BM_BatchNormReluFwdTrain.* fused ' <<<"$s"; then
  echo "FAIL: a variant without its default row was paired"; exit 1
fi
# A layer timed on one side only (its cuDNN row missing, its kiln row with error_occurred) is left
# out of both sums and named (it was summed on the side that had it); an optim name without
# /<kind>/<params> sorts last (an IndexError before).
mkdir "$tmp/part"
cat > "$tmp/part/bench_conv.json" <<'JSON'
{"benchmarks": [
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd/kiln/manual_time", "run_type": "iteration", "real_time": 30.0},
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd/cudnn/manual_time", "run_type": "iteration", "real_time": 10.0},
 {"name": "conv/cnn.2/16->16_k3s1p0_26x26/b128/fwd/kiln/manual_time", "run_type": "iteration", "real_time": 500.0},
 {"name": "conv/cnn.4/16->32_k3s1p0_24x24/b128/fwd/kiln/manual_time", "run_type": "iteration", "real_time": 0, "error_occurred": true},
 {"name": "conv/cnn.4/16->32_k3s1p0_24x24/b128/fwd/cudnn/manual_time", "run_type": "iteration", "real_time": 70.0}
]}
JSON
cat > "$tmp/part/bench_optim.json" <<'JSON'
{"benchmarks": [{"name": "BM_OptimStep/sgd/1000/2/manual_time", "run_type": "iteration", "real_time": 1.0, "floor_frac": 0.5},
 {"name": "BM_OptimOther/manual_time", "run_type": "iteration", "real_time": 1.0},
 {"name": "BM_OptimStep/adam/100000000/100/manual_time", "run_type": "iteration", "real_time": 1.0, "floor_frac": 0.8}]}
JSON
p=$(python3 "$KILN_SRC/scripts/bench_summary.py" "$tmp/part" 2>&1) || { echo "FAIL: bench_summary on partial rows"; echo "$p"; exit 1; }
# fwd: 30 / 10 (cnn.2 has no cuDNN row, cnn.4's kiln row failed)
grep -E -q '^  cnn b128 +3[.]00 +- +- +- ' <<<"$p" &&
  grep -q '^  cnn b128 fwd: 2 16->16_k3s1p0_26x26 (no cuDNN row), 4 16->32_k3s1p0_24x24 (no kiln row)$' <<<"$p" ||
  { echo "FAIL: conv ratio over layers timed on one side only"; echo "$p"; exit 1; }
[ "$(grep '^  BM_Optim' <<<"$p" | cut -d' ' -f3 | tr '\n' ' ')" = "BM_OptimStep/adam/100000000/100 BM_OptimStep/sgd/1000/2 BM_OptimOther " ] ||
  { echo "FAIL: optim order"; echo "$p"; exit 1; }
if grep -q 'left out of those sums' <<<"$s"; then echo "FAIL: a note on complete conv rows"; echo "$s"; exit 1; fi
# scripts/ncu_summary.py on ncu's per-kernel summary (the layout of ncu 2025): totals are
# invocations x average, in us whatever unit a row uses, sorted, with shares of the whole.
cat > "$tmp/ncu.txt" <<'NCU'
==PROF== Disconnected from process 571
[571] train_mnist@127.0.0.1
  <unnamed>::bias_grad_kernel(const float *, const float *, int, int, int, float *) (16, 1, 1)x(256, 1, 1), Device 0, CC 9.0, Invocations 4
    Section: Command line profiler metrics
    ---------------------- ----------- ------- ------- -------
    Metric Name            Metric Unit Minimum Maximum Average
    ---------------------- ----------- ------- ------- -------
    gpu__time_duration.sum          us  100.00  200.00  150.00
    ---------------------- ----------- ------- ------- -------
  void act_fwd_kernel<0>(const float *, float *, long) (300, 1, 1)x(256, 1, 1), Device 0, CC 9.0, Invocations 100
    Section: Command line profiler metrics
    ---------------------- ----------- ------- ------- -------
    Metric Name            Metric Unit Minimum Maximum Average
    ---------------------- ----------- ------- ------- -------
    gpu__time_duration.sum          ns  3000.00  5000.00  4000.00
    ---------------------- ----------- ------- ------- -------
  void kiln::act_fwd_kernel<(kiln::Act)1>(const float *, float *, long) (30, 1, 1)x(256, 1, 1), Device 0, CC 9.0, Invocations 10
    Section: Command line profiler metrics
    ---------------------- ----------- ------- ------- -------
    Metric Name            Metric Unit Minimum Maximum Average
    ---------------------- ----------- ------- ------- -------
    gpu__time_duration.sum          us  1.00  1.00  1.00
    ---------------------- ----------- ------- ------- -------
NCU
n=$(python3 "$KILN_SRC/scripts/ncu_summary.py" "$tmp/ncu.txt")
grep -q '^114 launches, 1010.0 us of kernel time' <<<"$n" || { echo "FAIL: ncu totals"; echo "$n"; exit 1; }
grep -q '^top: <unnamed>::bias_grad_kernel (grid 16x1x1) 59.4% of the time, 4 launches of 150.00 us$' <<<"$n" ||
  { echo "FAIL: ncu top"; echo "$n"; exit 1; }
grep -E -q '^ +400.0 +39.6%  void act_fwd_kernel<0> +300x1x1 +100 +4.00$' <<<"$n" || { echo "FAIL: ncu row"; echo "$n"; exit 1; }
# a template argument in parentheses (an enum value) stays in the name: only the parameter list goes
grep -E -q '^ +10.0 +1.0%  void kiln::act_fwd_kernel<\(kiln::Act\)1> +30x1x1 +10 +1.00$' <<<"$n" ||
  { echo "FAIL: ncu name with (kiln::Act)1"; echo "$n"; exit 1; }
# grouping commas (1,234.00) are read, not a silently dropped kernel; a header with no duration
# line is named on stderr (after the table: run.sh reads line 2 of both together)
cat > "$tmp/ncu2.txt" <<'NCU'
  k1(float *) (1, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0, Invocations 2
    gpu__time_duration.sum        usecond     1,000.00     1,468.00     1,234.00
  k2(float *) (2, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0, Invocations 1
    gpu__time_duration.sum        usecond        32.00        32.00        32.00
  k3(float *) (3, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0, Invocations 5
NCU
n=$(python3 "$KILN_SRC/scripts/ncu_summary.py" "$tmp/ncu2.txt" 2>&1)
[ "$(sed -n 2p <<<"$n")" = "top: k1 (grid 1x1x1) 98.7% of the time, 2 launches of 1234.00 us" ] &&
  grep -q '^3 launches, 2500.0 us of kernel time' <<<"$n" &&
  [ "$(tail -n 1 <<<"$n")" = "ncu_summary.py: 1 kernels without a gpu__time_duration.sum line, left out: k3 (grid 3x1x1)" ] ||
  { echo "FAIL: ncu_summary.py with grouping commas / a header without durations"; echo "$n"; exit 1; }
# every duration 0 (ncu's resolution on tiny kernels): shares are '-', not a ZeroDivisionError
printf '%s\n' '  k1(float*) (1, 1, 1)x(32, 1, 1), Context 1, Stream 7, Device 0, CC 9.0, Invocations 3' \
  '    gpu__time_duration.sum        usecond         0.00         0.00         0.00' > "$tmp/ncu0.txt"
n=$(python3 "$KILN_SRC/scripts/ncu_summary.py" "$tmp/ncu0.txt" 2>&1) &&
  [ "$(sed -n 2p <<<"$n")" = "top: k1 (grid 1x1x1) - of the time, 3 launches of 0.00 us" ] &&
  grep -E -q '^ +0.0 +-  k1 +1x1x1 +3 +0.00$' <<<"$n" || { echo "FAIL: ncu_summary.py with every duration 0"; echo "$n"; exit 1; }
# a missing file: one line on stderr, exit 1 (a traceback before)
if python3 "$KILN_SRC/scripts/ncu_summary.py" "$tmp/none.txt" >"$tmp/o" 2>"$tmp/e" ||
    [ -s "$tmp/o" ] || [ "$(wc -l <"$tmp/e")" != 1 ] || ! grep -q "^ncu_summary.py: $tmp/none.txt: No such file" "$tmp/e"; then
  echo "FAIL: ncu_summary.py on a missing file"; cat "$tmp/o" "$tmp/e"; exit 1
fi
# A family's file cut short (a benchmark killed mid-write) or not Google Benchmark JSON is said so,
# not reported as missing, nor a traceback (a JSON list).
mkdir "$tmp/bad"
echo '{"benchmarks": [{"name": "x", ' > "$tmp/bad/bench_linear.json"
echo '[1]' > "$tmp/bad/bench_pool.json"
b=$(python3 "$KILN_SRC/scripts/bench_summary.py" "$tmp/bad")
grep -q '^linear: bench_linear.json is unreadable (Expecting' <<<"$b" &&
  grep -q "^pool: bench_pool.json is not Google Benchmark JSON (no 'benchmarks' list)$" <<<"$b" &&
  grep -q '^conv: no bench_conv.json$' <<<"$b" || { echo "FAIL: bench_summary on bad files"; echo "$b"; exit 1; }
# scripts/bench_table.py: with repetitions the median aggregate is the rate (the cv row, last in
# the file, was taken before: "0" images/s), a bad PyTorch line is skipped and counted, a missing
# or non-Google-Benchmark file is named, and nothing to show is exit 1.
cat > "$tmp/bench_train.json" <<'JSON'
{"benchmarks": [
 {"name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_type": "iteration", "images_per_s": 100.0},
 {"name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_type": "iteration", "images_per_s": 130.0},
 {"name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_type": "iteration", "images_per_s": 120.0},
 {"name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time_mean", "run_name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_type": "aggregate", "aggregate_name": "mean", "images_per_s": 116.7},
 {"name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time_median", "run_name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_type": "aggregate", "aggregate_name": "median", "images_per_s": 120.0},
 {"name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time_stddev", "run_name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_type": "aggregate", "aggregate_name": "stddev", "images_per_s": 15.3},
 {"name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time_cv", "run_name": "BM_TrainEpoch/mlp/batch:128/graphs:1/manual_time", "run_type": "aggregate", "aggregate_name": "cv", "images_per_s": 0.13},
 {"name": "BM_TrainEpoch/mlp/batch:128/graphs:0/manual_time", "run_type": "iteration", "images_per_s": 80.0}
]}
JSON
printf '%s\n' '{"model": "mlp", "batch": 128, "mode": "eager", "images_per_s": 60.0}' \
  '{"model": "mlp", "batch": "x", "mode": "graphs", "images_per_s": 1.0}' '[1]' > "$tmp/pt.jsonl"
bt=$KILN_SRC/scripts/bench_table.py
t=$(python3 "$bt" "$tmp/bench_train.json" "$tmp/pt.jsonl" 2>"$tmp/e")
grep -q '^| mlp | 128 | 80 | 120 | 60 | - | - | 2.00x | - |$' <<<"$t" || { echo "FAIL: bench_table medians"; echo "$t"; exit 1; }
grep -q "^bench_table: $tmp/pt.jsonl: 2 unreadable lines skipped$" "$tmp/e" || { echo "FAIL: bench_table bad lines"; cat "$tmp/e"; exit 1; }
echo '[1]' > "$tmp/list.json"
t=$(python3 "$bt" "$tmp/list.json" "$tmp/pt.jsonl" 2>"$tmp/e")
grep -q "^bench_table: no kiln results: $tmp/list.json: not Google Benchmark JSON" "$tmp/e" && grep -q '^| mlp | 128 | - | - | 60 |' <<<"$t" ||
  { echo "FAIL: bench_table on a JSON list"; echo "$t"; cat "$tmp/e"; exit 1; }
python3 "$bt" "$tmp/none.json" "$tmp/none.jsonl" >"$tmp/o" 2>"$tmp/e" && rc=0 || rc=$?
if [ "$rc" != 1 ] ||
    ! grep -q "^bench_table: no PyTorch results: $tmp/none.jsonl: No such file" "$tmp/e" || ! grep -q '^bench_table: no results in either file$' "$tmp/e"; then
  echo "FAIL: bench_table with no inputs"; cat "$tmp/o" "$tmp/e"; exit 1
fi
echo PASS
