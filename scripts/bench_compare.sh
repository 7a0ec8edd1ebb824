#!/usr/bin/env bash
# kiln vs PyTorch end to end, in one run on one GPU: bench_train (JSON) and
# benchmarks/pytorch_reference.py (JSON lines), then a side-by-side table with kiln/PyTorch
# ratios (scripts/bench_table.py). Works from the repository (finds a build dir) and from the
# GPU bundle (bin/ next to scripts/). Exits 0 with a note when there is no GPU or no torch.
# Usage: scripts/bench_compare.sh [OUT_DIR]      env: KILN_BENCH_TRAIN, PYTHON, BENCH_ARGS, PYREF_ARGS
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-${OUT:-$root/out}}
mkdir -p "$out"
bench=${KILN_BENCH_TRAIN:-}
if [ -z "$bench" ]; then
  for c in "$root/bin/bench_train" "$root"/build*/benchmarks/bench_train; do
    [ -x "$c" ] && { bench=$c; break; }
  done
fi
pyref=""
for c in "$root/benchmarks/pytorch_reference.py" "$here/pytorch_reference.py"; do
  [ -f "$c" ] && { pyref=$c; break; }
done
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x /opt/torch/bin/python ]; then py=/opt/torch/bin/python; else py=python3; fi
fi
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; date -u +%FT%TZ; } \
  | tee "$out/bench_device.txt"
if [ -n "$bench" ]; then
  echo "kiln: $bench"
  # shellcheck disable=SC2086
  "$bench" --benchmark_out="$out/bench_train.json" --benchmark_out_format=json ${BENCH_ARGS:-} 2>&1 \
    | tee "$out/bench_train.txt" | tail -15
else
  echo "bench_compare: no bench_train binary (CUDA build: ninja -C <build> bench_train)" >&2
fi
if [ -n "$pyref" ]; then
  echo "pytorch: $py $pyref"
  # shellcheck disable=SC2086
  "$py" "$pyref" ${PYREF_ARGS:-} >"$out/pytorch.jsonl" 2> >(tee "$out/pytorch.err" >&2)
else
  echo "bench_compare: pytorch_reference.py not found" >&2
fi
python3 "$here/bench_table.py" "$out/bench_train.json" "$out/pytorch.jsonl" | tee "$out/bench_compare.md"
exit 0
