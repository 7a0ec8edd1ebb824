#!/usr/bin/env bash
# The benchmark binaries on the CUDA emulator (emu preset): each runs a few of its smallest
# cases once, writes Google Benchmark JSON with the counters the issues read, and
# scripts/bench_summary.py turns that into its tables. The times mean nothing here; what is
# checked is that every binary sets up, runs and reports before a GPU session depends on it,
# and the one device-independent number: the fused optimizer step's launches per step (<= 2).
set -euo pipefail
: "${KILN_BENCH_DIR:?}" "${KILN_SRC:?}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {  # binary, filter
  "$KILN_BENCH_DIR/$1" --benchmark_min_time=0.0001 --benchmark_filter="$2" \
    --benchmark_out="$out/$1.json" --benchmark_out_format=json >"$out/$1.txt" 2>&1 ||
    { echo "FAIL: $1 exited $?"; cat "$out/$1.txt"; exit 1; }
  python3 - "$out/$1.json" "$1" <<'PY'
import json, sys
try:
    bm = json.load(open(sys.argv[1]))["benchmarks"]
except ValueError:
    sys.exit(f"FAIL: {sys.argv[2]}: no JSON results (does the filter match anything?)")
bad = [b["name"] for b in bm if b.get("error_occurred")]
assert bm and not bad, f"{sys.argv[2]}: {len(bm)} results, errors in {bad}"
print(f"{sys.argv[2]}: {len(bm)} results")
PY
}
run bench_ceilings '.'
run bench_conv 'conv/cnn[.]0/.*/b8/fwd/kiln/|conv/cnn[.]0/.*/b8/fwd[+]bwd/kiln_relu_fused/'
run bench_pool 'cnn.pool/.*/b128/maxpool'
run bench_norm 'Norm(FwdTrain|Fwd|FwdTrain/persistent|BwdTrain/persistent)/128/16/28/28/|CopyBaseline/128/16/28/28/'
run bench_dropout '/128/16/28/28/'
run bench_linear '/128/256/10/'
run bench_optim '/1000000/'
run bench_train 'mlp/batch:128/graphs:1'
# 1024 images in batches of 128: the warm-up epoch captures, and later epochs replay the graph.
python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))["benchmarks"][0]
sys.exit(0 if b.get("replays_per_epoch", 0) >= 2 else 1)' "$out/bench_train.json" ||
  { echo "FAIL: bench_train never replayed its CUDA graph"; exit 1; }
summary=$(python3 "$KILN_SRC/scripts/bench_summary.py" "$out")
echo "$summary"
for section in ceilings "conv: kiln / cuDNN" "pool:" "norm:" "dropout:" "optim:" "linear:"; do
  grep -q "^$section" <<<"$summary" || { echo "FAIL: bench_summary has no '$section' section"; exit 1; }
done
# Two launches per fused step, whatever the number of tensors (30 here), for both optimizers.
[ "$(grep -c -E '^  BM_OptimStep/(adam|sgd_momentum)/1000000/30 +[0-9.]+ +[0-9.]+ +2[.]0 *$' <<<"$summary")" -eq 2 ] ||
  { echo "FAIL: launches per optimizer step"; exit 1; }
echo PASS
