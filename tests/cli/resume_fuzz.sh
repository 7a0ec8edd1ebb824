#!/usr/bin/env bash
# Randomized resume equivalence (scripts/resume_fuzz.py): twenty drawn recipes, each resumed from
# three of its own checkpoints (mid-epoch, epoch ends or the final --save), must end bit for bit
# as their uninterrupted runs. Fixed seed: the same recipes every run.
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_SRC:?}" "${KILN_TEST_DATA:?}"
exec python3 "$KILN_SRC/scripts/resume_fuzz.py" --bin "$KILN_BIN/train_mnist" \
  --data "$KILN_TEST_DATA" --recipes 20 --resumes 3 --seed 1
