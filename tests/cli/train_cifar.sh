#!/usr/bin/env bash
# train_cifar on small generated CIFAR-10 binary batches (valid format, random pixels, labels
# tied to the mean colour so there is something to learn): one epoch runs end to end with the
# cifar model and augmentation (which changes the result); a run resumed mid-epoch ends as the
# uninterrupted one; a missing data directory is a one-line error.
set -euo pipefail
: "${KILN_BIN:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
python3 - <<'PY'
import os, random
random.seed(0)
os.makedirs("data/cifar10")
def batch(name, n):
    out = bytearray()
    for i in range(n):
        label = i % 10
        base = 20 + 20 * label
        out.append(label)
        out += bytes(min(255, max(0, base + random.randint(-20, 20))) for _ in range(3072))
    open(os.path.join("data/cifar10", name), "wb").write(out)
for k in range(1, 6):
    batch(f"data_batch_{k}.bin", 40)
batch("test_batch.bin", 50)
PY
out=$("$KILN_BIN/train_cifar" --device cpu --data-dir data --epochs 1 --batch-size 20 2>&1)
echo "$out"
grep -q '^epoch 1: ' <<<"$out" && grep -q '^test_acc=' <<<"$out" || { echo "FAIL: no training output"; exit 1; }
# train_cifar augments by default: without it the same run trains on other batches and ends
# with another test loss (augmentation once never reached the trainer).
plain=$("$KILN_BIN/train_cifar" --device cpu --data-dir data --epochs 1 --batch-size 20 --no-augment 2>&1)
[ "$(echo "$out" | grep '^test_acc=' | cut -d' ' -f2)" != "$(echo "$plain" | grep '^test_acc=' | cut -d' ' -f2)" ] ||
  { echo "FAIL: --augment changes nothing"; echo "$plain"; exit 1; }
# Resumed mid-epoch (step 15 of 20: epoch 2, batch 5), the run ends with the uninterrupted run's
# tensors: the epoch in progress draws the same crops and flips again.
r=(--device cpu --data-dir data --epochs 2 --batch-size 20 --model mlp --width 16 --depth 1 --seed 5)
"$KILN_BIN/train_cifar" "${r[@]}" --save full.safetensors > /dev/null
"$KILN_BIN/train_cifar" "${r[@]}" --checkpoint-dir ck --checkpoint-every-steps 5 > /dev/null
"$KILN_BIN/train_cifar" "${r[@]}" --resume ck/ckpt-step-15.safetensors --save resumed.safetensors > /dev/null
python3 - full.safetensors resumed.safetensors <<'PY' || exit 1
import json, struct, sys
def tensors(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop('__metadata__')
    return {k: b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
if diff or not a:
    sys.exit('FAIL: the resumed run differs in %s' % diff[:5])
print('resumed mid-epoch: %d tensors identical' % len(a))
PY
# The test split is one file, so an output at its name in a directory searched before the one
# it is in would be read as the test set from then on: refused. A training batch's name there
# is not (the five are taken from one directory holding them all), and the run writes it.
mkdir -p d2 && cp -r data/cifar10 d2/cifar-10-batches-bin
set +e
"$KILN_BIN/train_cifar" --device cpu --data-dir d2 --epochs 0 --model mlp --width 8 --log d2/test_batch.bin > /dev/null 2> err.txt
rc=$?
set -e
[ $rc = 2 ] && [ ! -e d2/test_batch.bin ] &&
  grep -q '^train_cifar: error: --log d2/test_batch.bin is a name the loader reads before d2/cifar-10-batches-bin/test_batch.bin, a file of cifar10/test the run reads; name another$' err.txt ||
  { echo "FAIL: --log over the test split's name (rc $rc)"; cat err.txt; exit 1; }
"$KILN_BIN/train_cifar" --device cpu --data-dir d2 --epochs 0 --model mlp --width 8 --log d2/data_batch_1.bin > /dev/null &&
  [ -e d2/data_batch_1.bin ] && "$KILN_BIN/train_cifar" --device cpu --data-dir d2 --epochs 0 --model mlp --width 8 > /dev/null ||
  { echo "FAIL: --log at a training batch's name in an earlier directory"; exit 1; }
# ...unless that directory holds the other four: the output would complete its set and be read
# as data_batch_1 from then on (a run after it failed on the checkpoint until 2026-12-07).
mkdir -p d3 && cp -r data/cifar10 d3/cifar-10-batches-bin && cp data/cifar10/data_batch_[2-5].bin d3/
set +e
"$KILN_BIN/train_cifar" --device cpu --data-dir d3 --epochs 1 --model mlp --width 8 --save d3/data_batch_1.bin > /dev/null 2> err.txt
rc=$?
set -e
[ $rc = 2 ] && [ ! -e d3/data_batch_1.bin ] &&
  grep -q '^train_cifar: error: --save d3/data_batch_1.bin is a name the loader reads before d3/cifar-10-batches-bin/data_batch_1.bin, a file of cifar10/train the run reads; name another$' err.txt ||
  { echo "FAIL: --save completing an earlier directory's batches (rc $rc)"; cat err.txt; exit 1; }
# --augment on images it cannot crop is refused before the log is opened (it was emptied)
echo '{"type":"epoch","epoch":1}' > keep.jsonl
set +e
"$KILN_BIN/train_cifar" --device cpu --dataset mnist --data-dir "$KILN_TEST_DATA" --model mlp --width 8 --epochs 1 \
  --log keep.jsonl > /dev/null 2> err.txt
rc=$?
set -e
[ $rc = 2 ] && grep -q 'needs 3x32x32 images (CIFAR-10), got \[1, 28, 28\]' err.txt &&
  [ "$(cat keep.jsonl)" = '{"type":"epoch","epoch":1}' ] ||
  { echo "FAIL: a refused --augment (rc $rc) or the log it left: $(cat keep.jsonl)"; cat err.txt; exit 1; }
"$KILN_BIN/train_cifar" --summary | grep '3, 32, 32' >/dev/null || { echo "FAIL: --summary input shape"; exit 1; }
set +e
"$KILN_BIN/train_cifar" --device cpu --data-dir nowhere --epochs 1 > out.txt 2> err.txt
rc=$?
set -e
# (without the device line, which came first)
[ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] && grep -q 'train_cifar: error:' err.txt && [ ! -s out.txt ] ||
  { echo "FAIL: missing data rc=$rc"; cat out.txt err.txt; exit 1; }
echo "PASS"
