#!/usr/bin/env bash
# Every experiments/*.yaml loads: sweep files list their trials (sweep --dry-run validates each
# trial's config), single-run configs pass train_mnist --config FILE --summary.
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_SRC:?}"
n=0
for f in "$KILN_SRC"/experiments/*.yaml; do
  grep -q '^# Question:' "$f" || { echo "FAIL: $f has no '# Question:' comment"; exit 1; }
  if grep -q '^parameters:' "$f"; then
    "$KILN_BIN/sweep" "$f" --dry-run > /dev/null || { echo "FAIL: $f"; exit 1; }
  else
    "$KILN_BIN/train_mnist" --config "$f" --summary > /dev/null || { echo "FAIL: $f"; exit 1; }
  fi
  n=$((n + 1))
done
[ "$n" -ge 15 ] || { echo "FAIL: only $n experiment files"; exit 1; }
echo "PASS ($n files)"
