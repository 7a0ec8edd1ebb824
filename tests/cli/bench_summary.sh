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
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd+bwd/kiln/manual_time", "run_type": "iteration", "real_time": 99.0, "kiln/cuDNN": 9.0},
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd+bwd/kiln/manual_time_median", "run_name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd+bwd/kiln/manual_time", "run_type": "aggregate", "aggregate_name": "median", "real_time": 60.0, "kiln/cuDNN": 2.0},
 {"name": "conv/cnn.0/1->16_k3s1p0_28x28/b128/fwd+bwd/cudnn/manual_time", "run_type": "iteration", "real_time": 30.0},
 {"name": "conv/cnn.2/16->16_k3s1p0_26x26/b128/fwd+bwd/kiln/manual_time", "run_type": "iteration", "real_time": 100.0, "kiln/cuDNN": 1.25},
 {"name": "conv/cnn.2/16->16_k3s1p0_26x26/b128/fwd+bwd/cudnn/manual_time", "run_type": "iteration", "real_time": 80.0}
]}
JSON
cat > "$tmp/bench_optim.json" <<'JSON'
{"benchmarks": [{"name": "BM_OptimStep/adam/100000000/100/manual_time", "run_type": "iteration", "real_time": 1.0,
  "GB/s": 2800.0, "floor_frac": 0.8, "launches_per_step": 2.0}]}
JSON
s=$(python3 "$KILN_SRC/scripts/bench_summary.py" "$tmp")
echo "$s"
# fwd: (30 + 50) / (10 + 90) = 0.80; fwd+bwd with the median row: (60 + 100) / (30 + 80) = 1.45
grep -E -q '^  cnn b128 +0[.]80 +- +- +1[.]45 ' <<<"$s" || { echo "FAIL: conv sums"; exit 1; }
grep -E -q '^  cnn b128 +0 +1->16_k3s1p0_28x28 +2[.]00 *$' <<<"$s" || { echo "FAIL: worst layer"; exit 1; }
grep -E -q '^  BM_OptimStep/adam/100000000/100 +2800 +1[.]25 +2[.]0 *$' <<<"$s" || { echo "FAIL: optim"; exit 1; }
grep -q '^dropout: no bench_dropout.json' <<<"$s" || { echo "FAIL: missing family"; exit 1; }
echo PASS
