#!/usr/bin/env bash
# scripts/bench_summary.py on hand-made Google Benchmark JSON: the conv ratio is kiln time over
# cuDNN time summed over the layers (not a mean of per-layer ratios), the worst layer is named,
# repetitions' medians win over single runs, and the optimizer's time/floor is 1/floor_frac.
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
NCU
n=$(python3 "$KILN_SRC/scripts/ncu_summary.py" "$tmp/ncu.txt")
grep -q '^104 launches, 1000.0 us of kernel time' <<<"$n" || { echo "FAIL: ncu totals"; echo "$n"; exit 1; }
grep -q '^top: <unnamed>::bias_grad_kernel (grid 16x1x1) 60.0% of the time, 4 launches of 150.00 us$' <<<"$n" ||
  { echo "FAIL: ncu top"; echo "$n"; exit 1; }
grep -E -q '^ +400.0 +40.0%  void act_fwd_kernel<0> +300x1x1 +100 +4.00$' <<<"$n" || { echo "FAIL: ncu row"; echo "$n"; exit 1; }
echo PASS
