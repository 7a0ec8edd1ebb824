#!/usr/bin/env bash
# The whole bad-input corpus through train_mnist: every case under tests/bad_inputs/ (broken IDX
# and CIFAR files as data dirs, broken checkpoints via --resume, broken YAML via --config,
# nonsense flags) must exit with its expected code (1 runtime, 2 usage; never a signal), print
# exactly one "train_mnist: error:" line containing the expected text, and leave pre-existing
# --save and --log files byte for byte unchanged.
set -uo pipefail
: "${KILN_BIN:?}" "${KILN_SRC:?}" "${KILN_TEST_DATA:?}"
tm="$KILN_BIN/train_mnist"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A copy (2 MB): a case whose check fails writes where it points (@CASE@/...), not into the
# source tree, where the next run would find the case changed.
cp -r "$KILN_SRC/tests/bad_inputs" "$tmp/corpus"
corpus="$tmp/corpus"
# Small and fast; each case overrides what it needs (later flags win).
base=(--device cpu --data-dir "$KILN_TEST_DATA" --model mlp --width 8 --depth 1 --optimizer sgd
      --momentum 0.9 --epochs 1 --train-limit 100 --test-limit 50)

fails=0
count=0
run_case() {  # run_case NAME CASE_DIR ARGS...
  local name=$1 dir=$2
  shift 2
  local code want
  code=$(sed -n 1p "$dir/expect")
  want=$(sed -n 2p "$dir/expect")
  printf 'GOOD-CHECKPOINT' > "$tmp/out.safetensors"
  printf '{"type":"epoch"}\n' > "$tmp/out.jsonl"
  local sums_before sums_after
  sums_before=$(md5sum "$tmp/out.safetensors" "$tmp/out.jsonl")
  "$tm" "${base[@]}" --save "$tmp/out.safetensors" --log "$tmp/out.jsonl" "$@" > "$tmp/stdout" 2> "$tmp/stderr"
  local rc=$?
  sums_after=$(md5sum "$tmp/out.safetensors" "$tmp/out.jsonl")
  local errors msg problem=""
  errors=$(grep -c '^train_mnist: error:' "$tmp/stderr")
  msg=$(grep '^train_mnist: error:' "$tmp/stderr" | head -1)
  if [ "$rc" -ge 128 ]; then problem="killed by signal $((rc - 128))"
  elif [ "$rc" -ne "$code" ]; then problem="exit $rc, expected $code"
  elif [ "$errors" -ne 1 ]; then problem="$errors error lines, expected 1"
  elif [[ "$msg" != *"$want"* ]]; then problem="message lacks '$want'"
  elif LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$tmp/stderr"; then
    problem="a control character in stderr (a file's bytes echoed raw)"
  elif [ "$sums_before" != "$sums_after" ]; then problem="a pre-existing output file was changed"
  fi
  count=$((count + 1))
  if [ -n "$problem" ]; then
    fails=$((fails + 1))
    echo "FAIL $name: $problem"
    sed 's/^/    /' "$tmp/stderr" | head -5
  else
    echo "ok   $name (exit $rc): ${msg#train_mnist: error: }"
  fi
}

for dir in "$corpus"/idx/*/; do
  run_case "idx/$(basename "$dir")" "$dir" --data-dir "${dir%/}"
done
for dir in "$corpus"/cifar/*/; do
  run_case "cifar/$(basename "$dir")" "$dir" --dataset cifar10 --data-dir "${dir%/}"
done
for group in checkpoints yaml cli; do
  for dir in "$corpus/$group"/*/; do
    args=()
    while IFS= read -r a; do
      a=${a//@CASE@/${dir%/}}
      args+=("${a//@DATA@/$KILN_TEST_DATA}")
    done < "$dir/args"
    run_case "$group/$(basename "$dir")" "$dir" "${args[@]}"
  done
done
echo "bad inputs: $((count - fails))/$count cases behaved"
[ "$count" -ge 50 ] || { echo "FAIL: only $count cases found under $corpus"; exit 1; }
[ "$fails" -eq 0 ]
