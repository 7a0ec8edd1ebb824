#!/usr/bin/env bash
# I/O failures, injected with strace (-P FILE: only that file's calls count) and a file-size
# limit: a call interrupted by a signal handler (EINTR, injected: kiln's SIGINT/SIGTERM handlers
# now restart calls, another program's need not) is retried and the outputs are byte-identical;
# a read error (EIO) names the file and is not taken for a corrupt file; a short write past `ulimit -f` fails cleanly (no
# SIGXFSZ kill, no torn JSONL record, no temp file); a sweep whose results.jsonl cannot be
# read fails instead of rewriting results.csv without its rows; a failed lr_find write leaves
# the old curve with its suggestions, or the new curve without any (never another run's).
set -u
: "${KILN_BIN:?}" "${KILN_TEST_DATA:?}"
command -v strace >/dev/null || { echo "SKIP: no strace (scripts/install_deps.sh installs it)"; exit 77; }
strace -qq -o /dev/null true 2>/dev/null || { echo "SKIP: strace cannot trace here"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fail=0
data="$KILN_TEST_DATA"
T=(--device cpu --data-dir "$data" --train-limit 500 --test-limit 200 --epochs 2 --model mlp --width 16)
# LeakSanitizer (asan preset) cannot run under a tracer (it stops the world with ptrace itself)
inject() { ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -qq -o /dev/null "$@"; }
valid_jsonl() {  # every line a JSON object, the file ending in a newline
  python3 -c 'import json,sys
t=open(sys.argv[1]).read()
assert t == "" or t.endswith("\n"), "torn last line"
[json.loads(l) for l in t.splitlines()]' "$1"
}
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; shift; [ $# -gt 0 ] && cat "$@"; fail=1; }

mkdir ref && (cd ref && "$KILN_BIN/train_mnist" "${T[@]}" --save w.safetensors --log l.jsonl --log-every 1 >out 2>&1) ||
  { echo "FAIL: reference run"; cat ref/out; exit 1; }
lines=$(wc -l <ref/l.jsonl)

# EINTR: the checkpoint's fsync, the data's reads, the log's writes: retried, same result.
for c in "fsync:-e trace=fsync -e inject=fsync:error=EINTR:when=1" \
         "data-read:-P $data/mnist/train-images-idx3-ubyte.gz -e trace=read -e inject=read:error=EINTR:when=2" \
         "log-write:-P $tmp/e/l.jsonl -e trace=write -e inject=write:error=EINTR:when=3"; do
  name=${c%%:*}
  rm -rf e && mkdir e
  # shellcheck disable=SC2086
  (cd e && inject ${c#*:} "$KILN_BIN/train_mnist" "${T[@]}" --save w.safetensors --log l.jsonl --log-every 1 >out 2>&1)
  rc=$?
  if [ $rc = 0 ] && cmp -s ref/w.safetensors e/w.safetensors && [ "$(wc -l <e/l.jsonl)" = "$lines" ] &&
     valid_jsonl e/l.jsonl; then ok "eintr-$name"; else bad "eintr-$name (exit $rc)" e/out; fi
done

# EIO reading a checkpoint or the data: one line naming the file and the error.
"$KILN_BIN/train_mnist" "${T[@]}" --resume "$tmp/ref/w.safetensors" --epochs 3 >/dev/null 2>err &&
  inject -P "$tmp/ref/w.safetensors" -e trace=read -e inject=read:error=EIO:when=1 \
    "$KILN_BIN/train_mnist" "${T[@]}" --resume "$tmp/ref/w.safetensors" --epochs 3 >/dev/null 2>err
[ $? = 1 ] && [ "$(wc -l <err)" = 1 ] && grep -q "error: checkpoint $tmp/ref/w.safetensors: read failed: Input/output error$" err &&
  ok eio-checkpoint || bad eio-checkpoint err
inject -P "$data/mnist/train-images-idx3-ubyte.gz" -e trace=read -e inject=read:error=EIO:when=2 \
  "$KILN_BIN/train_mnist" "${T[@]}" >/dev/null 2>err
[ $? = 1 ] && grep -q "error: $data/mnist/train-images-idx3-ubyte.gz: read failed: Input/output error$" err &&
  ok eio-data || bad eio-data err
# A config or schedule file that opens but cannot be read is a runtime failure (exit 1, "read
# failed"), not a usage error, nor "cannot open", whatever read(2)'s errno (a FUSE file system
# may give EFBIG or ENODATA, which the reader also uses for a file too large, a FIFO unwritten).
printf 'epochs: 1\n' >cfg.yaml
for e in EIO ENODATA EFBIG; do
  inject -P "$tmp/cfg.yaml" -e trace=read -e inject=read:error=$e:when=1 \
    "$KILN_BIN/train_mnist" "${T[@]}" --config "$tmp/cfg.yaml" >/dev/null 2>err
  [ $? = 1 ] && [ "$(wc -l <err)" = 1 ] && grep -q "error: $tmp/cfg.yaml: read failed$" err &&
    ok "read-error-config-$e" || bad "read-error-config-$e" err
done
printf '0 0.1\n' >lr.txt
for e in "EIO:Input/output error" "EFBIG:File too large"; do
  inject -P "$tmp/lr.txt" -e trace=read -e inject=read:error=${e%%:*}:when=1 \
    "$KILN_BIN/train_mnist" "${T[@]}" --schedule manual --schedule-file "$tmp/lr.txt" >/dev/null 2>err
  [ $? = 1 ] && [ "$(wc -l <err)" = 1 ] &&
    grep -q "error: schedule file $tmp/lr.txt: read failed: ${e#*:}$" err &&
    ok "read-error-schedule-file-${e%%:*}" || bad "read-error-schedule-file-${e%%:*}" err
done

# A file-size limit: the write that crosses it is short, then EFBIG (SIGXFSZ was a kill).
(ulimit -f 4 && exec "$KILN_BIN/train_mnist" "${T[@]}" --log big.jsonl --log-every 1 >/dev/null 2>err)
[ $? = 1 ] && grep -q "big.jsonl: write failed: File too large$" err && valid_jsonl big.jsonl &&
  [ "$(wc -l <big.jsonl)" -gt 0 ] && ok fsize-log || bad "fsize-log (a torn record or the wrong exit)" err
cp ref/w.safetensors w.safetensors
(ulimit -f 64 && exec "$KILN_BIN/train_mnist" "${T[@]}" --width 512 --save w.safetensors >/dev/null 2>err)
[ $? = 1 ] && grep -q "w.safetensors: write failed, previous file left untouched: File too large$" err &&
  cmp -s ref/w.safetensors w.safetensors && [ -z "$(ls | grep 'w.safetensors.tmp')" ] &&
  ok fsize-save || bad fsize-save err

# A sweep's results.jsonl unreadable when results.csv is rebuilt after trial 1 (its 8th open:
# setup, then per trial a check, the append, the rebuild):
# the sweep fails naming it, results.csv keeps trial 0's row, --resume finishes all three.
printf 'method: grid\nmetric: {name: test_acc, goal: maximize}\nbase: {model: mlp, width: 8, train_limit: 300, test_limit: 100}\nparameters:\n  lr: {values: [0.01, 0.02, 0.03]}\n' >s.yaml
# (strace -P matches the path as the call spells it: absolute here.)
inject -P "$tmp/sd/results.jsonl" -e trace=openat -e inject=openat:error=EACCES:when=8 \
  "$KILN_BIN/sweep" s.yaml --dir "$tmp/sd" --device cpu --data-dir "$data" >out 2>err
rc=$?
[ $rc = 1 ] && grep -q "error: $tmp/sd/results.jsonl: cannot open: Permission denied$" err && [ "$(wc -l <sd/results.csv)" = 2 ] &&
  ok sweep-results-unreadable || bad "sweep-results-unreadable (exit $rc, results.csv: $(wc -l <sd/results.csv) lines)" err
"$KILN_BIN/sweep" s.yaml --dir "$tmp/sd" --resume --device cpu --data-dir "$data" >out 2>err &&
  [ "$(wc -l <sd/results.csv)" = 4 ] && [ "$(wc -l <sd/results.jsonl)" = 3 ] &&
  ok sweep-resume-after || bad sweep-resume-after err sd/results.csv

# lr_find: its renames are the old suggestions aside (1), the curve (2), the suggestions (3).
# The curve's write fails: the old curve and its suggestions are both left as they were.
lf=("$KILN_BIN/lr_find" --device cpu --data-dir "$data" --model mlp --width 8 --train-limit 300 --num-it 20 --lr-find-csv lr.csv)
"${lf[@]}" >/dev/null 2>&1 && [ -f lr.csv.suggestions ] || bad "lr_find reference"
echo stale >lr.csv.suggestions
cp lr.csv lr.csv.before
inject -e trace=rename -e inject=rename:error=EIO:when=2 "${lf[@]}" >/dev/null 2>err
[ $? = 1 ] && grep -q "lr.csv: write failed, previous file left untouched: Input/output error" err &&
  [ "$(cat lr.csv.suggestions)" = stale ] && cmp -s lr.csv lr.csv.before && [ "$(ls -A | grep -c '[.]tmp[.]')" = 0 ] &&
  ok lr-find-curve-fails || bad "lr-find-curve-fails (suggestions: $(cat lr.csv.suggestions 2>&1))" err
# The suggestions' write fails after the curve's: no earlier run's suggestions left beside it.
inject -e trace=rename -e inject=rename:error=EIO:when=3 "${lf[@]}" --seed 7 >/dev/null 2>err  # (another curve)
[ $? = 1 ] && grep -q "lr.csv.suggestions: write failed, previous file left untouched: Input/output error" err &&
  [ ! -e lr.csv.suggestions ] && ! cmp -s lr.csv lr.csv.before && [ "$(ls -A | grep -c '[.]tmp[.]')" = 0 ] &&
  ok lr-find-pair || bad "lr-find-pair (suggestions: $(cat lr.csv.suggestions 2>&1))" err
exit $fail
