#!/usr/bin/env bash
# scripts/catalogue.sh on the committed MNIST subset: two experiments (a sweep and the LR range
# test) write catalogue.md with their best trial and suggestions; a second run skips finished
# experiments; bad arguments exit 2.
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_SRC:?}" "${KILN_TEST_DATA:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
cat=$KILN_SRC/scripts/catalogue.sh
run=(--device cpu --data-dir "$KILN_TEST_DATA" --epochs 1 --model mlp --width 32)
KILN_BIN=$KILN_BIN "$cat" "$tmp/c" --only input_normalization,lr_range_test -- "${run[@]}" > out.txt
cat "$tmp/c/catalogue.md"
grep -q '^| input_normalization | 2 | normalize=\(true\|false\) | test_acc 0\.[0-9]* |' "$tmp/c/catalogue.md" ||
  { echo "FAIL: sweep row"; exit 1; }
grep -q '^| lr_range_test | 1 | valley [0-9.e-]*, steep ' "$tmp/c/catalogue.md" || { echo "FAIL: lr_find row"; exit 1; }
[ -f "$tmp/c/input_normalization/done" ] && [ -f "$tmp/c/lr_range_test/lr_find.csv" ] || { echo "FAIL: outputs"; exit 1; }
[ "$(grep -c '^| ' "$tmp/c/catalogue.md")" -eq 3 ] || { echo "FAIL: other experiments ran"; exit 1; }
# Finished experiments are not run again (their results stay as they were).
before=$(cat "$tmp/c/input_normalization/results.csv")
KILN_BIN=$KILN_BIN "$cat" "$tmp/c" --only input_normalization -- "${run[@]}" > /dev/null
[ "$before" = "$(cat "$tmp/c/input_normalization/results.csv")" ] || { echo "FAIL: reran a finished sweep"; exit 1; }
set +e
KILN_BIN=$KILN_BIN "$cat" "$tmp/c" --bogus > /dev/null 2>&1
rc=$?
set -e
[ $rc -eq 2 ] || { echo "FAIL: bad argument rc=$rc"; exit 1; }
echo PASS
