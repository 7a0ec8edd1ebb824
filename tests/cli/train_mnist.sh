#!/usr/bin/env bash
# train_mnist as a user runs it: real MNIST subset, the output contract (device line, epoch
# lines, final line), JSONL metrics, --summary, and the exit codes for usage errors (2),
# bad data (1) and divergence (3), each with one line naming what is wrong.
set -u
bin="$KILN_BIN/train_mnist"
data="$KILN_TEST_DATA"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() {  # check NAME EXPECTED_EXIT PATTERN -- command...
  local name=$1 want=$2 pat=$3
  shift 4
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL $name: exit $got, want $want"; cat "$tmp/err"; fail=1; return
  fi
  if ! grep -Eq -- "$pat" "$tmp/out" "$tmp/err"; then
    echo "FAIL $name: output lacks /$pat/"; cat "$tmp/out" "$tmp/err"; fail=1; return
  fi
  if [ "$want" != 0 ] && [ "$(grep -c 'train_mnist: error:' "$tmp/err")" != 1 ]; then
    echo "FAIL $name: want exactly one error line"; cat "$tmp/err"; fail=1; return
  fi
  # An error known before training (an option, an output path, the data) comes without the
  # device line, which the run prints once those are checked (it came first, then the error);
  # started=1: an error of the training itself.
  if { [ "$want" = 1 ] || [ "$want" = 2 ]; } && [ -z "${started:-}" ] && grep -q '^device:' "$tmp/out"; then
    echo "FAIL $name: a device line before the error"; cat "$tmp/out" "$tmp/err"; fail=1; return
  fi
  echo "ok   $name"
}

check train-mlp 0 '^test_acc=0\.[89][0-9]* test_loss=[0-9.]+ seconds=[0-9.]+$' -- \
  "$bin" --device cpu --data-dir "$data" --model mlp --epochs 2 --log "$tmp/m.jsonl"
grep -q '^device: cpu' "$tmp/out" || { echo "FAIL device line"; fail=1; }
# The device line names the GEMM kernels and the OPENBLAS_CORETYPE that may have chosen them
# (on x86-64 the kernels are then Haswell's; elsewhere OpenBLAS may not know the name).
OPENBLAS_CORETYPE=Haswell "$bin" --device cpu --data-dir "$data" --train-limit 64 --test-limit 64 \
  --epochs 1 --threads 1 > "$tmp/dev.out" 2>&1
grep -Eq '^device: cpu, 1 thread, (OpenBLAS [^ ]+ \(OPENBLAS_CORETYPE=Haswell\)|loops)$' "$tmp/dev.out" ||
  { echo "FAIL device line with OPENBLAS_CORETYPE: $(head -1 "$tmp/dev.out")"; fail=1; }
# Set but empty, the variable still chooses (OpenBLAS 0.3.21 on 2026-12-07's Xeon took Cooperlake
# so, and Prescott with it unset): it is shown.
OPENBLAS_CORETYPE= "$bin" --device cpu --data-dir "$data" --train-limit 64 --test-limit 64 \
  --epochs 1 --threads 1 > "$tmp/dev.out" 2>&1
grep -Eq '^device: cpu, 1 thread, (OpenBLAS [^ ]+ \(OPENBLAS_CORETYPE=""\)|loops)$' "$tmp/dev.out" ||
  { echo "FAIL device line with OPENBLAS_CORETYPE empty: $(head -1 "$tmp/dev.out")"; fail=1; }
# Its control characters escaped: a line break split the device line in two, an ESC reached the
# terminal.
OPENBLAS_CORETYPE=$'Has\nwell\x1b' "$bin" --device cpu --data-dir "$data" --train-limit 64 --test-limit 64 \
  --epochs 1 --threads 1 > "$tmp/dev.out" 2>&1
grep -Eq '^device: cpu, 1 thread, (OpenBLAS [^ ]+ \(OPENBLAS_CORETYPE=Has\\nwell\\u001b\)|loops)$' "$tmp/dev.out" &&
  [ "$(grep -c '^epoch 1:' "$tmp/dev.out")" = 1 ] && ! LC_ALL=C grep -q $'\x1b' "$tmp/dev.out" ||
  { echo "FAIL device line with control characters in OPENBLAS_CORETYPE: $(head -2 "$tmp/dev.out")"; fail=1; }
env -u OPENBLAS_CORETYPE "$bin" --device cpu --data-dir "$data" --train-limit 64 --test-limit 64 \
  --epochs 1 --threads 1 > "$tmp/dev.out" 2>&1
grep -Eq '^device: cpu, 1 thread, (OpenBLAS [^ ]+( \(older than this CPU, .*\))?|loops)$' "$tmp/dev.out" ||
  { echo "FAIL device line: $(head -1 "$tmp/dev.out")"; fail=1; }
# The line adds a hint where OpenBLAS chose kernels without AVX2 by itself on a CPU with AVX2 and
# FMA (OpenBLAS 0.3.21 on 2026-12-07's Xeon: Prescott), and only there (with the variable set,
# above, the variable is shown instead).
core=$(sed -n '1s/^device: cpu, 1 thread, OpenBLAS \([^ ]*\).*$/\1/p' "$tmp/dev.out" | tr 'A-Z' 'a-z')
want_hint=0
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo &&
  [[ " prescott core2 penryn dunnington nehalem sandybridge atom katmai coppermine northwood banias opteron opteron_sse3 barcelona bobcat bulldozer piledriver steamroller nano generic unknown " == *" $core "* ]]; then
  want_hint=1
fi
[ "$(grep -c '^device: .*OPENBLAS_CORETYPE=[A-Za-z ]* is faster, with another rounding)$' "$tmp/dev.out")" = $want_hint ] ||
  { echo "FAIL the OpenBLAS kernel hint (want $want_hint, core '$core')"; cat "$tmp/dev.out"; fail=1; }
[ "$(grep -c '"type":"epoch"' "$tmp/m.jsonl")" = 2 ] || { echo "FAIL jsonl records"; fail=1; }
for k in epoch step lr momentum train_loss train_acc test_loss test_acc grad_norm seconds images_per_s; do
  grep -q "\"$k\":" "$tmp/m.jsonl" || { echo "FAIL jsonl lacks $k"; fail=1; }
done
# --val-split 0.1: 1800 images train (57 steps of 32), 200 validate; each epoch line and record
# carries val_loss/val_acc; the final line keeps its format.
check val-split 0 '^epoch 1: train_loss=[0-9.]+ train_acc=[0-9.]+ val_loss=[0-9.]+ val_acc=[0-9.]+ test_loss=' -- \
  "$bin" --device cpu --data-dir "$data" --model mlp --width 32 --epochs 1 --val-split 0.1 --log "$tmp/v.jsonl" \
  --save "$tmp/v.safetensors"
# --augment on MNIST's images continuing a checkpoint: refused (exit 2) with its one error line,
# before the "resumed from ..." line (it came first, so the refused run read as resumed).
"$bin" --device cpu --data-dir "$data" --resume "$tmp/v.safetensors" --epochs 2 --augment \
  > "$tmp/aug.out" 2> "$tmp/aug.err"
rc=$?
[ $rc = 2 ] && [ "$(grep -c '^train_mnist: error: mnist/train.*: --augment' "$tmp/aug.err")" = 1 ] &&
  ! grep -qv '^train_mnist: \(note\|warning\|error\):' "$tmp/aug.err" ||
  { echo "FAIL --augment refused after a resume's first lines: rc=$rc"; cat "$tmp/aug.err"; fail=1; }
# and any refusal of the trainer's checks alike: a batch norm's last batch of 1
"$bin" --device cpu --data-dir "$data" --model mlp --width 8 --norm batch --epochs 1 --train-limit 64 \
  --save "$tmp/bn.safetensors" > /dev/null 2>&1
"$bin" --device cpu --data-dir "$data" --resume "$tmp/bn.safetensors" --epochs 2 --train-limit 65 \
  > "$tmp/aug.out" 2> "$tmp/aug.err"
rc=$?
[ $rc = 2 ] && [ "$(grep -c '^train_mnist: error: layer 2 (BatchNorm1d(8)) trains on batches of at least 2' "$tmp/aug.err")" = 1 ] &&
  ! grep -qv '^train_mnist: \(note\|warning\|error\):' "$tmp/aug.err" ||
  { echo "FAIL a batch of 1 refused after a resume's first lines: rc=$rc"; cat "$tmp/aug.err"; fail=1; }
# kiln_eval --split val rebuilds the same 200 rows from the checkpoint's config
val_acc=$(grep -o 'val_acc=[0-9.]*' "$tmp/out" | cut -d= -f2)
"$KILN_BIN/kiln_eval" "$tmp/v.safetensors" --data-dir "$data" --split val > "$tmp/eval" 2>&1
grep -q "mnist val (200 samples): acc=$val_acc\$" "$tmp/eval" || { echo "FAIL kiln_eval --split val (want $val_acc)"; cat "$tmp/eval"; fail=1; }
# on other data the val split is not the run's rows: said (the checkpoint records its training
# set). The other data: the test images as the training split too (500 images, 450 after the split)
mkdir -p "$tmp/other/mnist"
for f in images-idx3 labels-idx1; do
  cp "$data/mnist/t10k-$f-ubyte.gz" "$tmp/other/mnist/t10k-$f-ubyte.gz"
  cp "$data/mnist/t10k-$f-ubyte.gz" "$tmp/other/mnist/train-$f-ubyte.gz"
done
"$KILN_BIN/kiln_eval" "$tmp/v.safetensors" --data-dir "$tmp/other" --split val > "$tmp/eval" 2>&1 &&
  grep -q "note: the run trained on 1800 images, labels crc32 [0-9a-f]*; this data's training split is 450 images" "$tmp/eval" ||
  { echo "FAIL kiln_eval --split val on other data"; cat "$tmp/eval"; fail=1; }
# --dump-logits over a data file it reads is refused (here a copy's), the file left whole
cp -r "$data" "$tmp/dcopy"
"$KILN_BIN/kiln_eval" "$tmp/v.safetensors" --data-dir "$tmp/dcopy" \
  --dump-logits "$tmp/dcopy/mnist/t10k-images-idx3-ubyte.gz" > "$tmp/eval" 2>&1
[ $? = 2 ] && grep -q "t10k-images-idx3-ubyte.gz, a file of mnist/test it reads; name another" "$tmp/eval" &&
  cmp -s "$tmp/dcopy/mnist/t10k-images-idx3-ubyte.gz" "$data/mnist/t10k-images-idx3-ubyte.gz" ||
  { echo "FAIL kiln_eval --dump-logits over a data file"; cat "$tmp/eval"; fail=1; }
# ... and over one of the split it does not score: the training files when it scores the test
# set (written, exit 0, and every later run on that directory failed)
"$KILN_BIN/kiln_eval" "$tmp/v.safetensors" --data-dir "$tmp/dcopy" \
  --dump-logits "$tmp/dcopy/mnist/train-images-idx3-ubyte.gz" > "$tmp/eval" 2>&1
[ $? = 2 ] && grep -q "train-images-idx3-ubyte.gz, a file of mnist/train, which later runs read; name another" "$tmp/eval" &&
  cmp -s "$tmp/dcopy/mnist/train-images-idx3-ubyte.gz" "$data/mnist/train-images-idx3-ubyte.gz" ||
  { echo "FAIL kiln_eval --dump-logits over a training file"; cat "$tmp/eval"; fail=1; }
# ... and so is an output at a name the loader reads before that file (the raw name beside its
# .gz): it was written, and every later run failed on it as a bad IDX file
for out in "kiln_eval $tmp/v.safetensors --dump-logits $tmp/dcopy/mnist/t10k-images-idx3-ubyte" \
           "kiln_eval $tmp/v.safetensors --dump-logits $tmp/dcopy/mnist/train-images-idx3-ubyte" \
           "kiln_eval $tmp/v.safetensors --split val --dump-logits $tmp/dcopy/mnist/t10k-labels-idx1-ubyte" \
           "train_mnist --epochs 0 --save $tmp/dcopy/mnist/train-images-idx3-ubyte" \
           "lr_find --num-it 3 --lr-find-csv $tmp/dcopy/mnist/t10k-labels-idx1-ubyte"; do
  read -r -a words <<<"$out"
  "$KILN_BIN/${words[0]}" "${words[@]:1}" --data-dir "$tmp/dcopy" > "$tmp/eval" 2>&1
  [ $? = 2 ] && grep -q "is a name the loader reads before $tmp/dcopy/mnist/.*-ubyte.gz, a file of mnist/t.* read.*; name another" "$tmp/eval" &&
    [ "$(ls "$tmp/dcopy/mnist" | grep -vc '\.gz$')" = 0 ] ||
    { echo "FAIL: ${words[0]} wrote beside a data file: $out"; cat "$tmp/eval"; ls "$tmp/dcopy/mnist"; fail=1; }
done
# A name the loader tries only after the file it reads (the dotted spelling comes after
# "-idx...gz") is an ordinary output: written, and the data still load.
"$KILN_BIN/train_mnist" --data-dir "$tmp/dcopy" --epochs 0 --save "$tmp/dcopy/mnist/train-images.idx3-ubyte" \
  > "$tmp/eval" 2>&1 &&
  "$KILN_BIN/kiln_eval" "$tmp/dcopy/mnist/train-images.idx3-ubyte" --data-dir "$tmp/dcopy" >> "$tmp/eval" 2>&1 ||
  { echo "FAIL: an output at a name read after the data"; cat "$tmp/eval"; fail=1; }
rm -f "$tmp/dcopy/mnist/train-images.idx3-ubyte"
# its --dump-logits says which rows it holds
"$KILN_BIN/kiln_eval" "$tmp/v.safetensors" --data-dir "$data" --split val --dump-logits "$tmp/val-dump.safetensors" > /dev/null 2>&1
python3 - "$tmp/val-dump.safetensors" <<'PY' || { echo "FAIL: the dump's metadata"; fail=1; }
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
h = json.loads(b[8:8 + struct.unpack('<Q', b[:8])[0]])
m = h['__metadata__']
assert (m['dataset'], m['split']) == ('mnist', 'val') and h['logits']['shape'] == [200, 10], (m, h['logits'])
PY
# kiln_eval verifies the checksums before it trusts the stored config: a corrupted config is
# named as corruption of that file (it was a bare JSON error before).
python3 - "$tmp/v.safetensors" "$tmp/badcfg.safetensors" <<'PY'
import sys
b = open(sys.argv[1], "rb").read()
assert b.count(b'"config":"{') == 1
open(sys.argv[2], "wb").write(b.replace(b'"config":"{', b'"config":"['))
PY
"$KILN_BIN/kiln_eval" "$tmp/badcfg.safetensors" --data-dir "$data" > "$tmp/eval" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "checkpoint $tmp/badcfg.safetensors: metadata checksum mismatch" "$tmp/eval" ||
  { echo "FAIL kiln_eval on a corrupted config: rc=$rc"; cat "$tmp/eval"; fail=1; }
"$KILN_BIN/kiln_eval" "$tmp/v.safetensors" --data-dir "$data" --test-limit 5x > "$tmp/eval" 2>&1
rc=$?
[ $rc = 2 ] && grep -q "kiln_eval: error: --test-limit: '5x' is not an integer" "$tmp/eval" ||
  { echo "FAIL kiln_eval --test-limit 5x: rc=$rc"; cat "$tmp/eval"; fail=1; }
grep -Eq '^test_acc=[0-9.]+ test_loss=[0-9.]+ seconds=[0-9.]+$' "$tmp/out" || { echo "FAIL val-split final line"; fail=1; }
# --log a FIFO no process reads: refused at once (the open blocked, past SIGTERM); with a
# reader it takes the records.
mkfifo "$tmp/fifo"
check log-fifo-unread 1 'fifo: a FIFO no process reads' -- \
  timeout -k 5 60 "$bin" --device cpu --data-dir "$data" --model mlp --width 8 --train-limit 100 --test-limit 100 --epochs 1 --log "$tmp/fifo"
timeout 120 cat "$tmp/fifo" > "$tmp/fifo.got" &  # (bounded: were the run first, no writer would come)
reader=$!
check log-fifo-read 0 '^test_acc=' -- \
  timeout -k 5 60 "$bin" --device cpu --data-dir "$data" --model mlp --width 8 --train-limit 100 --test-limit 100 --epochs 1 --log "$tmp/fifo"
wait $reader
grep -q '"type":"epoch","epoch":1,' "$tmp/fifo.got" || { echo "FAIL log-fifo-read: no record"; fail=1; }
# Inputs read whole (--config, --schedule-file, a sweep file) at a FIFO no process writes: refused
# at once (the open blocked, past SIGTERM); a pipe with a writer (--config <(...)) is read.
check config-fifo-unwritten 2 'fifo: a FIFO that gave nothing' -- \
  timeout -k 5 60 "$bin" --device cpu --data-dir "$data" --config "$tmp/fifo"
check schedule-fifo-unwritten 1 'schedule file .*fifo: a FIFO that gave nothing' -- \
  timeout -k 5 60 "$bin" --device cpu --data-dir "$data" --model mlp --width 8 --train-limit 100 --test-limit 100 \
  --epochs 1 --schedule manual --schedule-file "$tmp/fifo"
timeout -k 5 60 "$KILN_BIN/sweep" "$tmp/fifo" --dry-run > "$tmp/out" 2> "$tmp/err"
rc=$?
[ $rc = 2 ] && grep -q 'fifo: a FIFO that gave nothing' "$tmp/err" ||
  { echo "FAIL sweep-fifo-unwritten: exit $rc"; cat "$tmp/err"; fail=1; }
check config-process-substitution 0 '^test_acc=' -- \
  timeout -k 5 60 "$bin" --device cpu --data-dir "$data" --train-limit 100 --test-limit 100 \
  --config <(printf 'model: mlp\nwidth: 8\nepochs: 1\n')
check config-empty-pipe 0 '^test_acc=' -- \
  timeout -k 5 60 "$bin" --device cpu --data-dir "$data" --model mlp --width 8 --train-limit 100 \
  --test-limit 100 --epochs 1 --config <(true)
# Outputs at symbolic links are written through (as torch.save, open()): --save replaces the
# file a link leads to and keeps the link; a link into a missing directory (--log), and a
# --checkpoint-dir that is a link to nothing, are refused before training (the directory one
# failed after the first epoch).
"$bin" --device cpu --data-dir "$data" --model mlp --width 8 --train-limit 100 --test-limit 100 --epochs 1 \
  --save "$tmp/target.st" > /dev/null
cp "$tmp/target.st" "$tmp/target.before"
ln -s target.st "$tmp/link.st"
check save-through-link 0 '^test_acc=' -- \
  "$bin" --device cpu --data-dir "$data" --model mlp --width 8 --train-limit 100 --test-limit 100 --epochs 1 --seed 9 --save "$tmp/link.st"
[ -L "$tmp/link.st" ] && [ -s "$tmp/target.st" ] && ! cmp -s "$tmp/target.st" "$tmp/target.before" ||
  { echo "FAIL save-through-link: the link replaced or its file not written"; ls -l "$tmp"/link.st "$tmp"/target.st; fail=1; }
ln -s nowhere/x.jsonl "$tmp/loglink"
check log-link-missing-dir 2 'loglink \(a link to .*nowhere/x.jsonl\): directory .*nowhere does not exist' -- \
  "$bin" --device cpu --data-dir "$data" --model mlp --width 8 --train-limit 100 --epochs 1 --log "$tmp/loglink"
ln -s nowhere/ck "$tmp/cklink"
check ckpt-dir-link-to-nothing 2 'cklink is a symbolic link to .*nowhere/ck, which does not exist' -- \
  "$bin" --device cpu --data-dir "$data" --model mlp --width 8 --train-limit 100 --epochs 2 --checkpoint-every 1 --checkpoint-dir "$tmp/cklink"
grep -q '"step":57,.*"val_loss":[0-9.]*,"val_acc":[0-9.]*' "$tmp/v.jsonl" || { echo "FAIL val-split jsonl"; cat "$tmp/v.jsonl"; fail=1; }
# --early-stop 1 with a delta no loss change reaches: epoch 1 sets the best, epoch 2 does not
# improve on it, so the run stops before epoch 3 and says so (stderr and a JSONL record).
check early-stop 0 'early stopping before epoch 3: val_loss has not improved on [0-9.]+ \(epoch 1\) by more than 100 for 1 epoch$' -- \
  "$bin" --device cpu --data-dir "$data" --model mlp --width 32 --epochs 5 --train-limit 500 --val-split 0.2 \
  --early-stop 1 --early-stop-delta 100 --log "$tmp/es.jsonl"
[ "$(grep -c '^epoch ' "$tmp/out")" = 2 ] && grep -q '"type":"early_stop","epoch":2,"metric":"val_loss"' "$tmp/es.jsonl" ||
  { echo "FAIL early-stop: epochs or JSONL record"; cat "$tmp/out" "$tmp/es.jsonl"; fail=1; }
# --restore-best: the same run ends with epoch 1's weights; the final line scores those
check restore-best 0 '^restored the weights of epoch 1 \(val_loss [0-9.]+\): test_acc [0-9.]+' -- \
  "$bin" --device cpu --data-dir "$data" --model mlp --width 32 --epochs 5 --train-limit 500 --val-split 0.2 \
  --early-stop 1 --early-stop-delta 100 --restore-best
want=$(grep -o 'restored the weights of epoch 1 (val_loss [0-9.]*): test_acc [0-9.]*' "$tmp/err" | awk '{print $NF}')
got=$(grep -o '^test_acc=[0-9.]*' "$tmp/out" | cut -d= -f2)
awk -v a="$want" -v b="$got" 'BEGIN { exit !(a - b < 5e-5 && b - a < 5e-5) }' ||
  { echo "FAIL restore-best: final test_acc $got, restored $want"; fail=1; }
check train-cnn 0 '^test_acc=' -- "$bin" --device cpu --data-dir "$data" --train-limit 256 --test-limit 100 --epochs 1
check summary 0 'total parameters: [0-9]+' -- "$bin" --summary
# A model too large to train here is still shown (449 GiB to train: --summary made its weights,
# and the size check refused it)
check summary-huge 0 '^total parameters: 30117330954$' -- "$bin" --summary --model mlp --width 65536 --depth 8
# A batch larger than the dataset is one batch (PyTorch's DataLoader); 2^62 wrapped the label
# buffer's size to 0 (SIGSEGV) and 2^63-1 overflowed the batch count (a NaN "divergence").
for b in 4611686018427387904 9223372036854775807; do
  check huge-batch-$b 0 '^test_acc=' -- "$bin" --device cpu --data-dir "$data" --train-limit 64 --test-limit 64 \
    --epochs 1 --model mlp --width 16 --batch-size $b --eval-batch-size $b
done
check ignored-note 0 'note: --groups 3 is ignored without --norm group' -- "$bin" --summary --groups 3
check pool-after-mlp 0 'note: --pool-after 1 is ignored: .*the mlp has no pooling' -- "$bin" --summary --model mlp --pool-after 1
check log-every-alone 0 'note: --log-every is ignored without --log' -- "$bin" --summary --log-every 10
check decay-all-no-decay 0 "note: --decay-all is ignored: the weight decay is 0 \\(adam's default" -- \
  "$bin" --summary --optimizer adam --decay-all
check penalize-all-alone 0 'note: --penalize-all is ignored without --l1 or --l2' -- "$bin" --summary --penalize-all
# "--optimizer sgd" under the default one-cycle is not plain SGD (torch's OneCycleLR cycles its
# momentum too): said; early stopping without --val-split selects on the test set: said.
check sgd-one-cycle-note 0 'note: --schedule one-cycle cycles the momentum between 0.85 and 0.95 .*: sgd trains with it' -- \
  "$bin" --summary --optimizer sgd
check sgd-cycle-asked 0 'total parameters' -- "$bin" --summary --optimizer sgd --max-momentum 0.9
grep -q 'cycles the momentum' "$tmp/err" && { echo "FAIL: a momentum range given was noted"; fail=1; }
check sgd-no-cycle 0 'total parameters' -- "$bin" --summary --optimizer sgd --no-cycle-momentum
grep -q 'cycles the momentum' "$tmp/err" && { echo "FAIL: --no-cycle-momentum was noted"; fail=1; }
check early-stop-on-test 0 'note: --early-stop watches the test set \(no --val-split\)' -- \
  "$bin" --device cpu --data-dir "$data" --model mlp --width 16 --epochs 1 --train-limit 256 --test-limit 100 --early-stop 2
# plateau cuts after patience+1 bad epochs (torch): an early stop that comes no later ends the
# run before the lower lr trains; said, with the smallest --early-stop that leaves it two epochs
check plateau-early-stop 0 'note: --early-stop 3 ends the run before --schedule plateau can use a lower lr: it cuts after 3 epochs without improvement \(--patience 2, .*\); --early-stop 5 leaves it two epochs' -- \
  "$bin" --summary --schedule plateau --patience 2 --early-stop 3
check plateau-early-stop-later 0 'total parameters' -- "$bin" --summary --schedule plateau --patience 2 --early-stop 4
grep -q 'ends the run before --schedule plateau' "$tmp/err" && { echo "FAIL: --early-stop 4 with --patience 2 was noted"; fail=1; }
check channel-dropout 0 'Dropout2d' -- "$bin" --summary --dropout 0.1 --dropout-kind channel
[ "$(grep -c 'Dropout2d' "$tmp/out")" = 7 ] || { echo "FAIL channel dropout: want 7 Dropout2d layers"; cat "$tmp/out"; fail=1; }
# --fuse: the table shows the model as the run builds it; auto folds the ReLUs on the CPU only
check summary-fuse-on 0 '^7 +ReLU \(fused into layer 6\)' -- "$bin" --summary --fuse on --device cpu
check summary-fuse-auto-cpu 0 '^7 +ReLU \(fused into layer 6\)' -- "$bin" --summary --device cpu
check summary-fuse-off 0 'total parameters' -- "$bin" --summary --fuse off --device cpu
grep -q 'fused into' "$tmp/out" && { echo "FAIL summary-fuse-off: a ReLU is fused"; fail=1; }
# (a CUDA build: --device cuda sets up without a GPU; a CPU-only build refuses it, exit 2)
if "$bin" --summary --device cuda > "$tmp/out" 2>&1; then
  grep -q 'fused into' "$tmp/out" && { echo "FAIL summary-fuse-auto-cuda: a ReLU is fused"; fail=1; }
  echo "ok   summary-fuse-auto-cuda"
fi
# A CUDA build with no GPU: --device cuda fails (exit 1) before a device line; it printed
# "device: cuda: " with no device name, then the error (lr_find: "device: cuda").
if ! "$bin" --device cuda --data-dir "$data" --epochs 1 \
    --train-limit 64 --test-limit 64 > "$tmp/out" 2> "$tmp/err"; then
  if grep -q 'no CUDA device answers' "$tmp/err"; then
    ! grep -q '^device:' "$tmp/out" || { echo "FAIL cuda-no-gpu: a device line before the error"; cat "$tmp/out"; fail=1; }
    if [ -x "$KILN_BIN/lr_find" ]; then
      "$KILN_BIN/lr_find" --device cuda --data-dir "$data" --train-limit 64 --num-it 2 > "$tmp/out" 2> /dev/null
      ! grep -q '^device:' "$tmp/out" || { echo "FAIL cuda-no-gpu lr_find: a device line before the error"; cat "$tmp/out"; fail=1; }
    fi
    echo "ok   cuda-no-gpu"
  fi
fi
check channel-dropout-mlp 0 'note: --dropout-kind channel is ignored: the mlp has no channels' -- \
  "$bin" --summary --model mlp --dropout 0.1 --dropout-kind channel
# Two runs sharing a checkpoint directory: the second is told, and its --keep-last prunes only
# the names it reached (it deleted the first run's ckpt-epoch-2 and -3).
small=(--device cpu --data-dir "$data" --model mlp --width 8 --epochs 3 --train-limit 128 --test-limit 64)
"$bin" "${small[@]}" --checkpoint-every 1 --checkpoint-dir "$tmp/ck" >/dev/null 2>&1
check shared-ckpt-dir 0 "^train_mnist: note: checkpoint directory $tmp/ck already holds 3 periodic checkpoints" -- \
  "$bin" "${small[@]}" --epochs 1 --checkpoint-every 1 --checkpoint-dir "$tmp/ck" --keep-last 1 --optimizer sgd
[ "$(ls "$tmp/ck" | tr '\n' ' ')" = "ckpt-epoch-1.safetensors ckpt-epoch-2.safetensors ckpt-epoch-3.safetensors " ] ||
  { echo "FAIL: keep-last pruned another run's checkpoints: $(ls "$tmp/ck")"; fail=1; }
# A run that asks for no checkpoint trains in a directory it cannot write (as root, run as
# nobody: root writes anywhere), and one that asks for them is refused before training.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  # nobody may not reach the checkout (a clone under root's 0700 home): binary and data copied
  mkdir -p "$tmp/nb" && cp "$bin" "$tmp/nb/train_mnist" && cp -r "$data/mnist" "$tmp/nb/mnist" &&
    chmod -R a+rX "$tmp/nb"
  mkdir -p "$tmp/ro" && chmod 755 "$tmp" && chmod 555 "$tmp/ro"
  ( cd "$tmp/ro" && setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/nb/train_mnist" --device cpu \
      --data-dir "$tmp/nb" --model mlp --width 8 --epochs 1 --train-limit 100 --test-limit 50 ) \
    >"$tmp/out" 2>"$tmp/err" && grep -q '^test_acc=' "$tmp/out" ||
    { echo "FAIL: a run without checkpoints in a read-only directory"; cat "$tmp/err"; fail=1; }
  ( cd "$tmp/ro" && setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/nb/train_mnist" --device cpu \
      --data-dir "$tmp/nb" --model mlp --width 8 --epochs 1 --train-limit 100 --checkpoint-every 1 ) \
    >/dev/null 2>"$tmp/err"
  [ $? = 2 ] && grep -q 'checkpoint directory checkpoints: cannot create it in .: Permission denied' "$tmp/err" ||
    { echo "FAIL: --checkpoint-every in a read-only directory"; cat "$tmp/err"; fail=1; }
fi
# Nor does a file, or a dangling link, named like the default checkpoint directory ("checkpoints
# is not a directory" refused such a run, exit 2).
for what in file link; do
  rm -rf "$tmp/cf" && mkdir -p "$tmp/cf"
  if [ $what = file ]; then echo notes > "$tmp/cf/checkpoints"; else ln -s /nonexistent/kiln-mnt "$tmp/cf/checkpoints"; fi
  ( cd "$tmp/cf" && "$bin" "${small[@]}" --epochs 1 ) >"$tmp/out" 2>"$tmp/err" && grep -q '^test_acc=' "$tmp/out" ||
    { echo "FAIL: a run without checkpoints beside a $what named checkpoints"; cat "$tmp/err"; fail=1; }
done
rm -f "$tmp/cf/checkpoints" && echo notes > "$tmp/cf/checkpoints"  # asked for: refused before training
check checkpoint-dir-is-file 2 'checkpoint directory checkpoints: checkpoints is not a directory' -- \
  bash -c 'cd "$1" && shift && exec "$@"' _ "$tmp/cf" "$bin" "${small[@]}" --epochs 1 --checkpoint-every 1
# Early stopping's shape without early stopping: said (a sweep of early_stop over [0, 3] keeps it).
check early-stop-delta-alone 0 'note: --early-stop-delta is ignored without --early-stop N' -- \
  "$bin" "${small[@]}" --epochs 1 --early-stop-delta 0.5
# An output that is one of the run's inputs is refused before anything is written.
printf 'lr: 0.01\n' > "$tmp/c.yaml"
check log-is-config 2 "--log $tmp/c.yaml is the --config file" -- "$bin" "${small[@]}" --config "$tmp/c.yaml" --log "$tmp/c.yaml"
[ "$(cat "$tmp/c.yaml")" = "lr: 0.01" ] || { echo "FAIL: the config was written to"; fail=1; }
"$KILN_BIN/kiln_eval" "$tmp/ck/ckpt-epoch-1.safetensors" --data-dir "$data" \
  --dump-logits "$tmp/ck/./ckpt-epoch-1.safetensors" >/dev/null 2>"$tmp/err"
[ $? = 2 ] && grep -q 'kiln_eval: error: --dump-logits .* is the checkpoint' "$tmp/err" ||
  { echo "FAIL: kiln_eval --dump-logits over its checkpoint"; cat "$tmp/err"; fail=1; }
# --split val of a run that held out none names the checkpoint (it once named --val-split, a
# flag kiln_eval does not have).
"$KILN_BIN/kiln_eval" "$tmp/ck/ckpt-epoch-1.safetensors" --data-dir "$data" --split val >/dev/null 2>"$tmp/err"
[ $? = 2 ] && [ "$(wc -l < "$tmp/err")" = 1 ] &&
  grep -q "kiln_eval: error: --split val: checkpoint $tmp/ck/ckpt-epoch-1.safetensors's run held out no validation split" "$tmp/err" ||
  { echo "FAIL: kiln_eval --split val without a split"; cat "$tmp/err"; fail=1; }
# ... and one it cannot write, before scoring (it printed the accuracy, then failed).
out=$("$KILN_BIN/kiln_eval" "$tmp/ck/ckpt-epoch-1.safetensors" --data-dir "$data" \
  --dump-logits "$tmp/no/such/dir/d.safetensors" 2>"$tmp/err")
[ $? = 2 ] && [ -z "$out" ] && grep -q 'kiln_eval: error: --dump-logits .*: directory .* does not exist' "$tmp/err" ||
  { echo "FAIL: kiln_eval --dump-logits into a missing directory: $out"; cat "$tmp/err"; fail=1; }
# MNIST read as Fashion-MNIST (same file names; the data dir itself is searched too): said.
check mnist-as-fashion 0 '^train_mnist: note: .*t10k-images-idx3-ubyte.gz: mean pixel 0.121 is MNIST.s .*is --dataset mnist meant' -- \
  "$bin" --device cpu --dataset fashion-mnist --data-dir "$data/mnist" --model mlp --width 8 --epochs 1 --train-limit 200 \
  --save "$tmp/fashion.safetensors"
# ... the training split too (it was only the test split's), and by the other apps: kiln_eval
# and lr_find said nothing, a sweep only in each trial's log (now once on the terminal).
grep -q '^train_mnist: note: .*train-images-idx3-ubyte.gz: mean pixel 0.1[0-9]* is MNIST.s' "$tmp/err" ||
  { echo "FAIL: no note on the training files"; cat "$tmp/out" "$tmp/err"; fail=1; }
"$KILN_BIN/kiln_eval" "$tmp/fashion.safetensors" --device cpu --data-dir "$data/mnist" >/dev/null 2>"$tmp/err" &&
  grep -q '^kiln_eval: note: .*t10k-images-idx3-ubyte.gz: mean pixel 0.121 is MNIST.s' "$tmp/err" ||
  { echo "FAIL: kiln_eval's note"; cat "$tmp/err"; fail=1; }
"$KILN_BIN/lr_find" --device cpu --dataset fashion-mnist --data-dir "$data/mnist" --model mlp --width 8 \
  --train-limit 200 --num-it 5 --lr-find-csv "$tmp/lrf.csv" >"$tmp/out" 2>&1 &&
  grep -q '^lr_find: note: .*train-images-idx3-ubyte.gz: mean pixel 0.1[0-9]* is MNIST.s' "$tmp/out" ||
  { echo "FAIL: lr_find's note"; cat "$tmp/out"; fail=1; }
# ... named by the program that prints it: train_mnist --lr-find's said "lr_find: note:"
"$bin" --lr-find --device cpu --dataset fashion-mnist --data-dir "$data/mnist" --model mlp --width 8 \
  --train-limit 200 --num-it 5 --lr-find-csv "$tmp/lrf.csv" >"$tmp/out" 2>&1 &&
  grep -q '^train_mnist: note: .*train-images-idx3-ubyte.gz: mean pixel 0.1[0-9]* is MNIST.s' "$tmp/out" ||
  { echo "FAIL: train_mnist --lr-find's note"; cat "$tmp/out"; fail=1; }
printf 'method: grid\nmetric: {name: test_acc, goal: maximize}\nbase: {model: mlp, width: 8, train_limit: 200, test_limit: 100, dataset: fashion-mnist}\nparameters:\n  lr: {values: [0.01, 0.02]}\n' >"$tmp/fs.yaml"
"$KILN_BIN/sweep" "$tmp/fs.yaml" --dir "$tmp/fs" --device cpu --data-dir "$data/mnist" >/dev/null 2>"$tmp/err" &&
  [ "$(grep -c '^sweep: note: .*mean pixel .* is MNIST.s' "$tmp/err")" = 2 ] &&
  [ "$(grep -c '^sweep: note: .*train-images-idx3-ubyte.gz: mean pixel' "$tmp/err")" = 1 ] ||
  { echo "FAIL: sweep's notes (the train and test files', once each)"; cat "$tmp/err"; fail=1; }
# A model past the machine's memory is a usage error naming its largest layer, not an OOM kill
# (1000 layers of 65536x65536: ~69 TB of weights, gradients and moments, past any machine;
# refused before any weight is made).
check model-too-big 2 'training needs about [0-9.]+ GiB .*the largest is layer 3 \(Linear\(65536 -> 65536\)' -- \
  "$bin" --device cpu --data-dir "$data" --train-limit 64 --test-limit 64 --epochs 1 --model mlp --width 65536 --depth 1000
# A real allocation failure in evaluation, under an address-space cap of 300 MB: the run
# needs about 200 with batches of 25 to evaluate (most of it OpenBLAS's 128 MiB buffer; with
# OPENBLAS_NUM_THREADS=1 it starts no thread), and well over 300 for the validation split's
# 1500 at once. The evaluation halves --eval-batch-size until it fits and scores what batches
# of 25 score. Skipped under ASan, which cannot reserve its shadow memory under a cap.
capped() {
  (ulimit -v 300000 && OPENBLAS_NUM_THREADS=1 exec timeout -s KILL 60 "$bin" --device cpu \
    --data-dir "$data" --model cnn --train-limit 2000 --val-split 0.75 --test-limit 100 \
    --epochs 1 --batch-size 32 --threads 1 "$@")
}
scores() { grep -o 'val_loss=[^ ]* val_acc=[^ ]* test_loss=[^ ]* test_acc=[^ ]*' "$1"; }
capped --eval-batch-size 25 >"$tmp/cap-small" 2>"$tmp/cap-small.err"
small_rc=$?
if [ "$small_rc" != 0 ] && grep -q AddressSanitizer "$tmp/cap-small.err"; then
  echo "skip eval-oom-halves: ASan cannot run under an address-space cap"
elif [ "$small_rc" = 0 ] && ! grep -q note "$tmp/cap-small.err" &&
  capped --eval-batch-size 1500 >"$tmp/cap-big" 2>"$tmp/cap-big.err" &&
  grep -q '^train_mnist: note: evaluating mnist/val .* at --eval-batch-size 1500: out of memory: .*; evaluating at --eval-batch-size 750 from here on$' "$tmp/cap-big.err" &&
  [ -n "$(scores "$tmp/cap-small")" ] && [ "$(scores "$tmp/cap-big")" = "$(scores "$tmp/cap-small")" ]; then
  echo "ok   eval-oom-halves"
else
  echo "FAIL eval-oom-halves"; cat "$tmp/cap-small.err" "$tmp/cap-small" "$tmp/cap-big.err" "$tmp/cap-big"; fail=1
fi
check help 0 '--batch-size' -- "$bin" --help
# The epoch and result lines may be a run's only record: a stdout that cannot take them (a full
# disk) fails the run (exit 1, said on stderr) instead of exiting 0.
"$bin" --device cpu --data-dir "$data" --model mlp --width 8 --epochs 1 --train-limit 100 \
  --test-limit 50 > /dev/full 2> "$tmp/err"
rc=$?
if [ "$rc" = 1 ] && grep -q 'train_mnist: error: writing standard output failed' "$tmp/err"; then
  echo "ok   stdout-full"
else
  echo "FAIL stdout-full: exit $rc"; cat "$tmp/err"; fail=1
fi
# --help says what leaving an option out means (the app's defaults, not the library's), and
# how to turn off a bool that is on.
grep -Eq -- '--lr <float> .*\[default 0\.003\]$' "$tmp/out" && grep -Eq -- '--\[no-\]shuffle .*\[default on\]$' "$tmp/out" &&
  grep -Eq -- '--norm <string> .*\[default none\]$' "$tmp/out" || { echo "FAIL: help defaults"; fail=1; }
check bad-flag 2 "unknown option 'batch-sise' \(did you mean 'batch-size'\?\)" -- "$bin" --batch-sise 3
# PyTorch's names get kiln's (the edit distance alone said 'lr' for --wd and 'eps' for --gpu)
check bad-flag-wd 2 "unknown option 'wd' \(did you mean 'weight-decay'\?\)" -- "$bin" --wd 0.01
check bad-flag-gpu 2 "unknown option 'gpu' \(did you mean 'device'\?\)" -- "$bin" --gpu
check bad-value 2 "--lr: 'x' is not a finite number" -- "$bin" --lr x
check neg-lr 2 'lr' -- "$bin" --lr -1 --data-dir "$data"
check batch-0 2 'batch-size 0' -- "$bin" --batch-size 0 --data-dir "$data"
check groups 2 'not divisible by --groups 3' -- "$bin" --norm group --groups 3 --data-dir "$data"
check device 2 "device" -- "$bin" --device tpu
check missing-data 1 'fetch_data' -- "$bin" --device cpu --data-dir "$tmp/nowhere"
mkdir -p "$tmp/trunc/mnist"
cp "$data"/mnist/*.gz "$tmp/trunc/mnist/"
gunzip -c "$data/mnist/train-images-idx3-ubyte.gz" | head -c 5000 >"$tmp/trunc/mnist/train-images-idx3-ubyte"
rm "$tmp/trunc/mnist/train-images-idx3-ubyte.gz"
# A periodic checkpoint's name is refused for an output only where periodic checkpoints are
# written: without checkpoint options, training a periodic checkpoint on in place works.
mkdir -p "$tmp/pk"
small=(--device cpu --data-dir "$data" --model mlp --width 8 --train-limit 100 --test-limit 50)
check periodic-name-refused 2 "--save $tmp/pk/ckpt-epoch-1.safetensors: a periodic checkpoint's name in the checkpoint directory $tmp/pk; name another" -- \
  "$bin" "${small[@]}" --epochs 1 --checkpoint-every 1 --save "$tmp/pk/ckpt-epoch-1.safetensors"
check periodic-name-saved 0 '^test_acc=' -- "$bin" "${small[@]}" --epochs 1 --save "$tmp/pk/ckpt-epoch-1.safetensors"
check periodic-name-trained-on 0 '^test_acc=' -- \
  "$bin" "${small[@]}" --epochs 2 --resume "$tmp/pk/ckpt-epoch-1.safetensors" --save "$tmp/pk/ckpt-epoch-1.safetensors"
check truncated-idx 1 'train-images-idx3-ubyte.*truncated' -- "$bin" --device cpu --data-dir "$tmp/trunc"
# Divergence: a ReLU net at lr 1 overflows to NaN within a few steps (exit 3, names a layer);
# with global clipping the same run trains.
check nan-stop 3 'diverged.*layer [0-9]+' -- "$bin" --device cpu --data-dir "$data" --model mlp --depth 20 \
  --optimizer sgd --schedule constant --lr 1 --epochs 1
check clipped 0 '^test_acc=' -- "$bin" --device cpu --data-dir "$data" --model mlp --depth 20 \
  --optimizer sgd --schedule constant --lr 1 --epochs 1 --global-clipnorm 1.0
# The issue's sigmoid recipe stays finite; the loss bound stops it.
check loss-bound 3 'exceeds the divergence bound.*layer' -- "$bin" --device cpu --data-dir "$data" --model mlp \
  --depth 20 --activation sigmoid --lr 10 --epochs 1
# Resume names the options that changed since the checkpoint; a longer --epochs is allowed but
# stretches a one-cycle schedule, and that is said too.
small=(--device cpu --data-dir "$data" --model mlp --width 16 --train-limit 256 --test-limit 100)
check save-1-epoch 0 '^test_acc=' -- "$bin" "${small[@]}" --epochs 1 --save "$tmp/r.safetensors"
check resume-changed 0 'options changed since the checkpoint: lr 0\.003 -> 0\.002, epochs 1 -> 2 \(the one-cycle schedule spans --epochs' \
  -- "$bin" "${small[@]}" --epochs 2 --lr 0.002 --resume "$tmp/r.safetensors"
check resume-constant 0 'changed since the checkpoint: schedule one-cycle -> constant$' \
  -- "$bin" "${small[@]}" --epochs 2 --schedule constant --resume "$tmp/r.safetensors"
# cosine-restarts without --t-max: its first period is the run, so a longer run moves it too.
check save-restarts 0 '^test_acc=' -- "$bin" "${small[@]}" --epochs 1 --schedule cosine-restarts \
  --save "$tmp/cr.safetensors"
check resume-restarts 0 'epochs 1 -> 3 \(the cosine-restarts schedule spans --epochs' \
  -- "$bin" "${small[@]}" --epochs 3 --schedule cosine-restarts --resume "$tmp/cr.safetensors"
# --detect-anomaly checks every step, yet never changes a run's outcome (it is a diagnostic: a
# resume or a sweep accepts either setting). The sigmoid recipe above (logits that grow without
# overflowing) is warned of at its first step past the bound, before the epoch's last, and then
# stops at the epoch's end as without it (until 2026-12-07 it stopped at that step); a run that
# goes NaN stops at the same step and layer as without it, the bound on or off; a healthy run
# whose first step is past a low --max-loss (its epoch's mean is not) trains the same bits.
sig=(--device cpu --data-dir "$data" --model mlp --depth 20 --activation sigmoid --lr 10 --epochs 1)
check anomaly-off 3 'training diverged: train loss [0-9.e+]+ in epoch 1 \(step 63\) exceeds the divergence bound' -- "$bin" "${sig[@]}"
cp "$tmp/err" "$tmp/sig-off"
check anomaly-loss 3 '^train_mnist: warning: loss [0-9.e+]+ in epoch 1 \(step [0-9]+\) exceeds the divergence bound .*; largest gradient norm: layer [0-9]+ .*; the epoch.s mean train loss decides' -- \
  "$bin" "${sig[@]}" --detect-anomaly
at=$(grep -o '^train_mnist: warning: loss [^ ]* in epoch 1 (step [0-9]*)' "$tmp/err" | grep -o '[0-9]*)$' | tr -d ')')
[ -n "$at" ] && [ "$at" -lt 63 ] && [ "$(grep -c '^train_mnist: warning: loss' "$tmp/err")" = 1 ] ||
  { echo "FAIL anomaly-loss: step '$at', want one warning, before the epoch's last step (63)"; cat "$tmp/err"; fail=1; }
grep -v '^train_mnist: warning: loss' "$tmp/err" | cmp -s "$tmp/sig-off" - ||
  { echo "FAIL anomaly-loss: another outcome than without the flag"; cat "$tmp/sig-off" "$tmp/err"; fail=1; }
# (Its step 2 loss, finite, is already past the bound; step 3's is NaN.)
nan=(--device cpu --data-dir "$data" --model mlp --depth 20 --optimizer sgd --schedule constant --lr 1 --epochs 1)
"$bin" "${nan[@]}" >/dev/null 2>"$tmp/nan-bound-off"
check anomaly-nan-bound 3 '^train_mnist: warning: loss [0-9.e+]+ in epoch 1 \(step 2\) exceeds the divergence bound' -- \
  "$bin" "${nan[@]}" --detect-anomaly
grep -v '^train_mnist: warning: loss' "$tmp/err" | cmp -s "$tmp/nan-bound-off" - ||
  { echo "FAIL anomaly-nan-bound: another outcome than without the flag"; cat "$tmp/nan-bound-off" "$tmp/err"; fail=1; }
"$bin" "${nan[@]}" --max-loss -1 >/dev/null 2>"$tmp/nan-off"
check anomaly-nan 3 'training diverged: non-finite loss/gradient at epoch 1 step 3; first non-finite gradient in backward order: layer [0-9]+ \(Linear\) [^ ]+ \(' -- \
  "$bin" "${nan[@]}" --max-loss -1 --detect-anomaly
cmp -s "$tmp/nan-off" "$tmp/err" || { echo "FAIL anomaly-nan: another step or layer than without"; cat "$tmp/nan-off" "$tmp/err"; fail=1; }
healthy=(--device cpu --data-dir "$data" --model mlp --width 16 --epochs 2 --train-limit 300 --test-limit 100 --max-loss 3)
"$bin" "${healthy[@]}" --save "$tmp/h0.safetensors" >"$tmp/h0" 2>&1
check anomaly-healthy 0 '^test_acc=' -- "$bin" "${healthy[@]}" --detect-anomaly --save "$tmp/h1.safetensors"
[ "$(grep -c diverged "$tmp/err")" = 0 ] && grep -q '^train_mnist: warning: loss [0-9.]* in epoch 1 (step 1) exceeds the divergence bound 3 ' "$tmp/err" &&
  [ "$(grep -v '^saved' "$tmp/out" | sed -e 's/ [0-9.]*s .*//' -e 's/ seconds=.*//')" = "$(grep -v '^saved' "$tmp/h0" | sed -e 's/ [0-9.]*s .*//' -e 's/ seconds=.*//')" ] ||
  { echo "FAIL anomaly-healthy: another result than without, or no warning at step 1"; cat "$tmp/h0" "$tmp/out" "$tmp/err"; fail=1; }
# A JSONL log that cannot be written (a full disk) fails the run: exit 1, one line naming the
# file; the run stops there, so the --save of an earlier run is not replaced.
kept=(--device cpu --data-dir "$data" --model mlp --width 8 --epochs 1 --train-limit 100 --test-limit 50)
"$bin" "${kept[@]}" --save "$tmp/kept.safetensors" >/dev/null 2>&1
cp "$tmp/kept.safetensors" "$tmp/kept.orig"
started=1 check log-full 1 '^train_mnist: error: /dev/full: write failed: No space left on device$' -- \
  "$bin" "${kept[@]}" --seed 9 --log /dev/full --save "$tmp/kept.safetensors"
[ "$(grep -c . "$tmp/err")" = 1 ] || { echo "FAIL log-full: more than the error on stderr"; cat "$tmp/err"; fail=1; }
grep -q '^test_acc=' "$tmp/out" && { echo "FAIL log-full: a result line"; fail=1; }
cmp -s "$tmp/kept.safetensors" "$tmp/kept.orig" || { echo "FAIL log-full: the earlier --save was replaced"; fail=1; }
# --restore-best with --log: the last record says which epoch's weights the run ends with,
# their val_loss (epoch 1's record) and test score (the final line's); the --save holds the
# weights (and batch-norm statistics) of a run that stopped after epoch 1.
rb=(--device cpu --data-dir "$data" --model mlp --width 32 --norm batch --train-limit 500 --test-limit 200 --val-split 0.2 --schedule constant)
check restore-best-log 0 '^restored the weights of epoch 1 ' -- "$bin" "${rb[@]}" --epochs 5 --early-stop 1 \
  --early-stop-delta 100 --restore-best --log "$tmp/rb.jsonl" --save "$tmp/rb.safetensors"
"$bin" "${rb[@]}" --epochs 1 --save "$tmp/rb1.safetensors" >"$tmp/rb1" 2>&1
python3 - "$tmp/rb.jsonl" "$tmp/out" "$tmp/rb.safetensors" "$tmp/rb1.safetensors" <<'PY' || { echo "FAIL restore-best-log"; cat "$tmp/rb.jsonl"; fail=1; }
import json, struct, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
last = recs[-1]
assert last['type'] == 'restore_best' and last['epoch'] == 1, last
e1 = [r for r in recs if r.get('type') == 'epoch' and r['epoch'] == 1][0]
assert last['best'] == e1['val_loss'], (last, e1)
final = dict(kv.split('=') for kv in open(sys.argv[2]).read().split('\n')[-2].split())
assert abs(last['test_acc'] - float(final['test_acc'])) < 5e-5, (last, final)
assert abs(last['test_loss'] - float(final['test_loss'])) < 5e-5 * max(1, last['test_loss']), (last, final)
def model(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items()
            if k != '__metadata__' and not k.startswith(('optimizer.', 'early_stop.'))}
a, b = model(sys.argv[3]), model(sys.argv[4])
assert a.keys() == b.keys() and a == b, [k for k in a if a[k] != b.get(k)]
PY
# Paths with a tab and a backslash go into the checkpoint's config as JSON escapes and come
# back: kiln_eval finds the data through the stored --data-dir, and --resume reads the config
# (the options it names as changed come from it).
weird="$tmp/da"$'\t''ta\dir'
mkdir -p "$weird" && ln -s "$data/mnist" "$weird/mnist"
wr=(--device cpu --data-dir "$weird" --model mlp --width 16 --train-limit 256 --test-limit 100)
check weird-path-save 0 '^test_acc=' -- "$bin" "${wr[@]}" --epochs 1 --save "$weird/m\\"$'\t''.safetensors'
acc=$(grep -o '^test_acc=[0-9.]*' "$tmp/out" | cut -d= -f2)
python3 - "$weird/m\\"$'\t''.safetensors' "$weird" <<'PY' || { echo "FAIL weird-path config"; fail=1; }
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
cfg_text = json.loads(b[8:8 + n])['__metadata__']['config']
assert '\\t' in cfg_text and '\\\\' in cfg_text, cfg_text
cfg = json.loads(cfg_text)
assert cfg['data-dir'] == sys.argv[2] and cfg['save'] == sys.argv[1], cfg
PY
"$KILN_BIN/kiln_eval" "$weird/m\\"$'\t''.safetensors' --test-limit 100 > "$tmp/eval" 2>&1
grep -q "mnist test (100 samples): acc=$acc\$" "$tmp/eval" || { echo "FAIL weird-path kiln_eval (want $acc)"; cat "$tmp/eval"; fail=1; }
check weird-path-resume 0 'options changed since the checkpoint: lr 0\.003 -> 0\.002, epochs 1 -> 2' -- \
  "$bin" "${wr[@]}" --epochs 2 --lr 0.002 --resume "$weird/m\\"$'\t''.safetensors'
# Options a run reads only in some combinations: each is said to be ignored where it is, and
# not where it is read. --precision and --cuda-graphs under --device auto only when auto finds
# no GPU (the "device:" line of a run with nothing to train says which).
auto_dev=$("$bin" --data-dir "$data" --model mlp --width 8 --epochs 0 --train-limit 32 --test-limit 10 2>/dev/null |
  sed -n 's/^device: \([a-z]*\).*/\1/p')
if [ "$auto_dev" = cpu ]; then
  check precision-note 0 'note: --precision tf32 is ignored: no CUDA device answers, the CPU computes in fp32$' -- \
    "$bin" --summary --precision tf32
  check cuda-graphs-note 0 'note: --cuda-graphs on is ignored: no CUDA device answers, the CPU runs the steps$' -- \
    "$bin" --summary --cuda-graphs on
elif [ "$auto_dev" != cuda ]; then
  echo "FAIL: no device line from --device auto"; fail=1
fi
check batch-size-note 0 "note: --batch-size 128 is ignored: --batch-schedule sets every epoch's batch\$" -- \
  "$bin" --summary --batch-schedule 0:32,1:64 --batch-size 128
check batch-size-default 0 'total parameters' -- "$bin" --summary --batch-schedule 0:32,1:64 --scale-lr
grep -q 'note:' "$tmp/err" && { echo "FAIL: a note on --batch-schedule with --scale-lr"; cat "$tmp/err"; fail=1; }
check scale-lr-note 0 'note: --scale-lr is ignored without --batch-schedule \(it scales the lr with the scheduled batch\)$' -- \
  "$bin" --summary --scale-lr
# The one-cycle shape options and --plateau-mode reach the schedule: the lr of every step
# (--log-every 1) is torch's OneCycleLR with those div_factor, final_div_factor and pct_start
# (10 steps: phase 1 ends at step 0.5 * 10 - 1 = 4), and each epoch's lr is ReduceLROnPlateau's
# fed the metric its mode watches (max: the accuracy of one test image, which stays 1 and so
# does not improve; min: its falling loss).
check one-cycle-options 0 '^test_acc=' -- "$bin" --device cpu --data-dir "$data" --model mlp --width 16 --train-limit 320 \
  --batch-size 32 --epochs 1 --lr 0.01 --div-factor 5 --final-div-factor 100 --pct-start 0.5 --log-every 1 --log "$tmp/oc.jsonl"
python3 - "$tmp/oc.jsonl" <<'PY' || { echo "FAIL one-cycle-options: the lr per step"; fail=1; }
import json, math, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r['type'] == 'step']
assert [r['step'] for r in steps] == list(range(1, 11)), steps
max_lr, total = 0.01, 10
initial = max_lr / 5
final = initial / 100
end1, end2 = 0.5 * total - 1, total - 1
cos = lambda a, b, p: b + (a - b) / 2 * (1 + math.cos(math.pi * p))
for r in steps:
    t = r['step'] - 1  # a record follows its step
    want = cos(initial, max_lr, t / end1) if t <= end1 else cos(max_lr, final, (t - end1) / (end2 - end1))
    assert abs(r['lr'] - want) <= 1e-6 * want, (t, r['lr'], want)
PY
for mode in max min; do
  check plateau-mode-$mode 0 '^test_acc=' -- "$bin" --device cpu --data-dir "$data" --model mlp --width 32 --train-limit 500 \
    --test-limit 1 --epochs 4 --schedule plateau --patience 0 --factor 0.5 --threshold 0 --plateau-mode $mode --log "$tmp/pl-$mode.jsonl"
  python3 - "$tmp/pl-$mode.jsonl" $mode <<'PY' || { echo "FAIL plateau-mode-$mode: the lr per epoch"; cat "$tmp/pl-$mode.jsonl"; fail=1; }
import json, sys
mode = sys.argv[2]
epochs = [r for r in map(json.loads, open(sys.argv[1])) if r['type'] == 'epoch']
lr, best, cuts = 0.003, -float('inf') if mode == 'max' else float('inf'), 0
for r in epochs:  # torch ReduceLROnPlateau(mode, factor=0.5, patience=0, threshold=0)
    assert abs(r['lr'] - lr) <= 1e-9, (r['epoch'], r['lr'], lr)
    m = r['test_acc'] if mode == 'max' else r['test_loss']
    if (m > best) if mode == 'max' else (m < best):
        best = m
    else:
        lr, cuts = lr * 0.5, cuts + 1
assert (cuts > 0) == (mode == 'max'), (mode, cuts)  # the two modes part ways on this run
PY
done
# On a terminal the progress bar is cleared before a warning line (they were glued together:
# "... ETA 0.0swarning: epoch 2: ..."); `script` gives the run a terminal.
if command -v script > /dev/null; then
  script -qc "'$bin' --data-dir '$data' --device cpu --model mlp --width 16 --train-limit 1000 \
    --test-limit 100 --epochs 2 --optimizer sgd --lr 0.5" "$tmp/tty.out" > /dev/null 2>&1
  if ! grep -aq 'ETA [0-9.]*s' "$tmp/tty.out" || ! grep -aq 'train_mnist: warning: epoch' "$tmp/tty.out"; then
    echo "FAIL tty: no progress bar or no warning"; cat -v "$tmp/tty.out" | head -5; fail=1
  elif grep -aEq 'ETA [0-9.]*s(train_mnist: )?warning' "$tmp/tty.out"; then
    echo "FAIL tty: a warning glued to the progress bar"; grep -a warning "$tmp/tty.out" | cat -v; fail=1
  else
    echo "ok   tty-warning-after-bar"
  fi
  # ... and before the interrupted message of a run a signal stops mid-epoch: SIGTERM once a bar
  # is on the terminal (sent after a fixed 2 s, a run that had drawn none yet checked nothing).
  script -qfc "echo \$\$ > '$tmp/tty2.pid'; exec '$bin' --data-dir '$data' --device cpu --model cnn \
    --threads 1 --train-limit 2000 --test-limit 100 --epochs 50 --checkpoint-dir '$tmp/tty-ck'" \
    "$tmp/tty2.out" > /dev/null 2>&1 &
  tty_script=$!
  for _ in $(seq 600); do
    grep -aq 'ETA [0-9.]*s' "$tmp/tty2.out" 2> /dev/null && break
    kill -0 "$tty_script" 2> /dev/null || break
    sleep 0.2
  done
  kill -TERM "$(cat "$tmp/tty2.pid")" 2> /dev/null
  wait "$tty_script"
  if ! grep -aq 'ETA [0-9.]*s' "$tmp/tty2.out"; then
    echo "FAIL tty: no progress bar within 120 s"; cat -v "$tmp/tty2.out" | tail -3; fail=1
  elif grep -aq 'ETA [0-9.]*strain_mnist: interrupted' "$tmp/tty2.out"; then
    echo "FAIL tty: the interrupted message glued to the progress bar"; grep -a interrupted "$tmp/tty2.out" | cat -v; fail=1
  elif grep -aq 'interrupted by SIGTERM' "$tmp/tty2.out"; then
    echo "ok   tty-interrupted-after-bar"
  else
    echo "FAIL tty: the run was not interrupted"; cat -v "$tmp/tty2.out" | tail -3; fail=1
  fi
fi
exit $fail
