#!/usr/bin/env bash
# kiln against PyTorch on the CPU (skipped, exit 77, when no python3 imports torch; Debian's
# python3-torch is enough, scripts/install_deps.sh installs it where apt has it):
#   1. interop: checkpoints of mlp/cnn/cifar variants (batch and group norm, norm before and
#      after the activation, tanh, the maxpool moved, a --restore-best snapshot) load into the mirrored torch model with
#      strict names and give kiln's logits to 1e-4; the same check at rtol 1e-9 must fail, so
#      it compares real numbers;
#   2. training parity: scripts/check_pytorch_training.py, every optimizer, schedule, clipping
#      mode, penalty and norm layer, step by step against torch in float64 (also on a
#      generated CIFAR-10 set for the cifar model), and 30 random recipes over the same options;
#   3. benchmarks/pytorch_cpu_reference.py (whole runs side by side) on one short epoch.
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_SRC:?}" "${KILN_TEST_DATA:?}"
py=""
for c in ${KILN_TORCH_PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c "import torch" 2>/dev/null; then py=$c; break; fi
done
[ -n "$py" ] || { echo "SKIP: no python3 with torch (apt-get install python3-torch)"; exit 77; }
"$py" -c "import torch; print('torch', torch.__version__)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
"$py" - <<'PY'
import os, random
random.seed(1)
os.makedirs("cifar/cifar10")
def batch(name, n):  # valid CIFAR-10 binary records; labels tied to the mean colour
    out = bytearray()
    for i in range(n):
        label = i % 10
        out.append(label)
        out += bytes(min(255, max(0, 20 + 20 * label + random.randint(-40, 40))) for _ in range(3072))
    open(os.path.join("cifar/cifar10", name), "wb").write(out)
for k in range(1, 6):
    batch(f"data_batch_{k}.bin", 32)
batch("test_batch.bin", 40)
PY

i=0
while read -r dataset args; do
  i=$((i + 1))
  dir=$KILN_TEST_DATA
  [ "$dataset" = cifar10 ] && dir=cifar
  # shellcheck disable=SC2086
  "$KILN_BIN/train_mnist" --device cpu --dataset "$dataset" --data-dir "$dir" --train-limit 500 --test-limit 200 \
    --epochs 1 --batch-size 50 --save "m$i.safetensors" $args >/dev/null
  out=$("$py" "$KILN_SRC/scripts/check_pytorch_interop.py" "m$i.safetensors" --kiln-eval "$KILN_BIN/kiln_eval" \
        --data-dir "$dir")
  echo "$dataset $args: ${out##*: max}"
  grep -q ': OK$' <<<"$out" || { echo "FAIL: interop $dataset $args"; exit 1; }
done <<'EOF'
mnist --model mlp --depth 3 --width 64 --activation tanh --norm batch
mnist --model mlp --activation sigmoid --norm group --groups 4 --dropout 0.2
mnist --model cnn --norm batch --dropout 0.05
mnist --model cnn --norm group --groups 4 --norm-position after
mnist --model cnn --pool-after 7 --activation tanh
mnist --model mlp --width 5 --norm batch --epochs 2 --early-stop 1 --restore-best
cifar10 --model cifar --norm batch
EOF
set +e
"$py" "$KILN_SRC/scripts/check_pytorch_interop.py" m3.safetensors --kiln-eval "$KILN_BIN/kiln_eval" \
  --data-dir "$KILN_TEST_DATA" --rtol 1e-9 > strict.txt
rc=$?
set -e
[ $rc -eq 1 ] && grep -q 'MISMATCH$' strict.txt || { echo "FAIL: rtol 1e-9 passed (rc $rc): the check compares nothing"; cat strict.txt; exit 1; }

"$py" "$KILN_SRC/scripts/check_pytorch_training.py" --bin "$KILN_BIN" --data-dir "$KILN_TEST_DATA" --cifar-dir cifar
# and 30 random recipes over the same option space (a fixed sample: seeds 1-30)
"$py" "$KILN_SRC/scripts/check_pytorch_training.py" --bin "$KILN_BIN" --data-dir "$KILN_TEST_DATA" --random 30 --seed 1

# 3. the whole-run CPU comparison (benchmarks/pytorch_cpu_reference.py) still runs: one short epoch.
out=$("$py" "$KILN_SRC/benchmarks/pytorch_cpu_reference.py" --bin "$KILN_BIN" --data-dir "$KILN_TEST_DATA" \
      --epochs 1 --json ref.jsonl -- --model mlp --width 32 --train-limit 500 --test-limit 200)
echo "$out"
grep -q '^epoch 1: kiln test_acc 0\.[0-9]* .* torch test_acc 0\.[0-9]*' <<<"$out" && [ "$(wc -l < ref.jsonl)" -eq 1 ] ||
  { echo "FAIL: pytorch_cpu_reference.py"; exit 1; }
echo "PASS"
