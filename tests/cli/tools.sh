#!/usr/bin/env bash
# The paths of sweep, lr_find and kiln_eval that their own scripts do not reach: each tool's
# --help; sweep --report --top K and --importance refusing --top; a sweep file that is not YAML;
# a sweep directory whose run_options.json is corrupt, or lacks a key (an option added later),
# on --resume; lr_find stopping on a non-finite loss; scripts/time_to_acc.sh's exit status.
set -u
: "${KILN_BIN:?}" "${KILN_SRC:?}" "${KILN_TEST_DATA:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail=0
check() {  # check NAME TOOL EXPECTED_EXIT PATTERN -- args...: a failure says one error line
  local name=$1 tool=$2 want=$3 pat=$4
  shift 5
  "$KILN_BIN/$tool" "$@" >out 2>err
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL $name: exit $got, want $want"; cat out err; fail=1; return
  fi
  if ! grep -Eq -- "$pat" out err; then
    echo "FAIL $name: output lacks /$pat/"; cat out err; fail=1; return
  fi
  if [ "$want" != 0 ] && [ "$(grep -c "^$tool: error:" err)" != 1 -o "$(grep -vc "^$tool: note:" err)" != 1 ]; then
    echo "FAIL $name: want exactly one error line (and notes)"; cat err; fail=1; return
  fi
  # (errors known before the range test or the trials start come without the device line)
  if { [ "$want" = 1 ] || [ "$want" = 2 ]; } && grep -q '^device:' out; then
    echo "FAIL $name: a device line before the error"; cat out err; fail=1; return
  fi
  echo "ok   $name"
}
common=(--device cpu --data-dir "$KILN_TEST_DATA")

# --help: exit 0, the tool's own flags listed
check sweep-help sweep 0 'usage: sweep' -- --help
for f in --dir --resume --worker --top --dry-run --report --importance; do
  grep -q -- "^ *$f " out || { echo "FAIL sweep --help lacks $f"; fail=1; }
done
check lr-find-help lr_find 0 'usage: lr_find' -- --help
for f in --start-lr --end-lr --num-it --lr-find-csv --lr-find-val --data-dir --batch-size; do
  grep -q -- "^ *$f " out || { echo "FAIL lr_find --help lacks $f"; fail=1; }
done
check kiln-eval-help kiln_eval 0 'usage: kiln_eval CHECKPOINT' -- --help
for f in --data-dir --split --test-limit --device --threads --dump-logits; do  # usage and described
  grep -q -- "\[$f" out && grep -q -- "^  $f " out || { echo "FAIL kiln_eval --help lacks $f"; fail=1; }
done

# A finished 4-trial sweep: --report --top 2 shows its best two rows (those of the full
# leaderboard) and says how many more there are; --importance takes no --top.
cat > g.yaml <<YAML
method: grid
base: {model: mlp, width: 8, epochs: 1, train_limit: 300, test_limit: 100, optimizer: sgd, schedule: constant}
parameters:
  lr: {values: [0.3, 0.1, 0.01, 0.001]}
YAML
"$KILN_BIN/sweep" g.yaml --dir g "${common[@]}" > g.txt 2>&1 || { echo "FAIL: the sweep"; cat g.txt; exit 1; }
rows() { sed -n '/^leaderboard/,/^$/p' "$1" | awk '$1 ~ /^[0-9]+$/ { $1 = $1; print }'; }  # (column widths fit the rows shown)
[ "$(rows g.txt | wc -l)" = 4 ] || { echo "FAIL: the full leaderboard"; cat g.txt; fail=1; }
check report-top sweep 0 '^\(2 more in results.csv\)$' -- --report g --top 2
[ "$(rows out)" = "$(rows g.txt | head -2)" ] || { echo "FAIL: --top 2 rows"; cat out; fail=1; }
grep -q '^leaderboard (test_acc, higher is better; 4 trials)' out || { echo "FAIL: --top 2 header"; cat out; fail=1; }
check report-top-0 sweep 0 '^\(4 more in results.csv\)$' -- --report g --top=0
[ -z "$(rows out)" ] || { echo "FAIL: --top 0 rows"; cat out; fail=1; }
check report-top-bad sweep 2 "--top '2x': expected a number of rows" -- --report g --top 2x
check importance-top sweep 2 '--importance DIR reads a finished sweep and runs nothing; it takes no sweep file or other option$' -- \
  --importance g --top 2

# Data that is not there, or an output the range test cannot write, is refused before the
# device line (in a sweep also before its header and directory): it came after them.
check lr-find-missing-data lr_find 1 '^lr_find: error: mnist/train: cannot find ' -- \
  --device cpu --data-dir nowhere --num-it 2 --lr-find-csv m.csv
check lr-find-csv-missing-dir lr_find 2 '^lr_find: error: --lr-find-csv nowhere/x.csv: directory nowhere does not exist$' -- \
  "${common[@]}" --num-it 2 --lr-find-csv nowhere/x.csv
check sweep-missing-data sweep 1 '^sweep: error: mnist/train: cannot find ' -- g.yaml --dir gm --device cpu --data-dir nowhere
[ ! -e gm ] && ! grep -q '^sweep g.yaml' out || { echo "FAIL sweep-missing-data: its header or directory first"; cat out; fail=1; }
# ... but where a parameter sets the data, each trial finds its own: a worker whose trials have
# theirs runs (the first trial's were checked for every worker, and refused this one until
# 2026-12-07)
printf 'method: grid\nbase: {model: mlp, width: 8, epochs: 1, train_limit: 100, test_limit: 50}\nparameters:\n  data_dir: {values: [nowhere, %s]}\n' "$KILN_TEST_DATA" > dd.yaml
check sweep-swept-data-dir sweep 0 '^trial 1/2 \[.*\]: ok ' -- dd.yaml --dir dd --device cpu --worker 1/2

# A sweep file that is not YAML: exit 2, one line naming the file and the line.
printf 'base: {model: mlp}\nmethod: [grid\n' > broken.yaml
check yaml-syntax sweep 2 '^sweep: error: broken.yaml: not valid YAML at line 3: ' -- broken.yaml --dir b "${common[@]}"
[ ! -e b/results.jsonl ] || { echo "FAIL: a broken file ran trials"; fail=1; }

# --resume of a directory whose run_options.json no longer parses: one line naming the file.
cp -r g gc
printf '{"lr":' > gc/run_options.json
check resume-corrupt-options sweep 1 '^sweep: error: gc/run_options.json: ' -- g.yaml --dir gc --resume "${common[@]}"
# ... and one without it (a kiln's from before the file): a note on stderr, named, as the
# sweep's others (it was on stdout, "note: ...")
cp -r g gn && rm gn/run_options.json
check resume-options-unknown sweep 0 '^sweep: note: gn holds trials recorded before kiln kept gn/run_options.json' -- \
  g.yaml --dir gn --resume "${common[@]}"
! grep -q 'note:' out || { echo "FAIL resume-options-unknown: a note on stdout"; cat out; fail=1; }
# ... and one that lacks a key a later kiln added: nothing to compare it with, so not a change
# (the other keys still are: --epochs 2 is refused by name).
cp -r g gk
python3 - gk/run_options.json <<'PY'
import json, sys
p = sys.argv[1]
d = json.loads(open(p).read())
assert 'early-stop-start' in d, sorted(d)
del d['early-stop-start']
open(p, 'w').write(json.dumps(d, separators=(',', ':')) + '\n')
PY
check resume-missing-key sweep 0 'ran 0 trials here; 4 already done' -- g.yaml --dir gk --resume "${common[@]}"
check resume-missing-key-other sweep 2 'holds trials run with other options \(--epochs 1 -> 2\); ' -- \
  g.yaml --dir gk --resume --epochs 2 "${common[@]}"

# lr_find from an lr whose first step overflows the next forward pass (--start-lr 1e10 --end-lr
# 1e12, five layers): the loss goes from finite to NaN in one step, before the smoothed-loss rule
# can see it; the test stops there, says why, and writes the curve up to that step.
check lr-find-nonfinite lr_find 0 '^lr_find: 2 steps, stopped: non-finite loss at lr 1\.12202e\+10$' -- \
  "${common[@]}" --train-limit 500 --num-it 40 --model mlp --width 16 --depth 4 --start-lr 1e10 --end-lr 1e12 \
  --lr-find-csv nf.csv
[ "$(sed -n 3p nf.csv)" = "1,1.12201841e+10,nan,nan" ] || { echo "FAIL lr-find-nonfinite: the curve"; cat nf.csv; fail=1; }
# its progress line writes NaN as the CSV does ("-nan" for a negative-signed one before 2026-12-03)
grep -q '^lr_find step 1/40 lr=1\.12202e+10 loss=nan smoothed=nan$' err ||
  { echo "FAIL lr-find-nonfinite: the progress line"; cat err; fail=1; }
# An error message quoting a file's value with a newline and a terminal escape in it stays one
# line, the controls escaped (the sweep file's method came out over two lines, ESC raw).
printf 'method: "grid\\n\\e[31mall good"\nparameters: {lr: {values: [0.1]}}\n' > esc.yaml
check escaped-controls sweep 2 "key 'method': 'grid\\\\n\\\\u001b\\[31mall good': expected grid\\|random" -- esc.yaml --dry-run
# A value this kiln refuses recorded in a checkpoint (another version's, or edited; valid
# checksums): the error names the checkpoint and the recorded option, not a flag never given
# ("--init: unknown init" read as the user's --init; kiln_eval has no --init at all).
"$KILN_BIN/train_mnist" "${common[@]}" --train-limit 100 --model mlp --width 8 --epochs 0 --save rec.st >/dev/null 2>&1
# edit_st FILE PYTHON: runs PYTHON on the header h (its __metadata__ m) and the tensor bytes
# (bytearray d), then writes FILE back with both checksums recomputed as docs/FORMATS.md says.
edit_st() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys, zlib
p = sys.argv[1]
b = open(p, 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
m = h['__metadata__']
d = bytearray(b[8 + n:])
exec(sys.argv[2])
c = 0
for k in sorted(k for k in h if k != '__metadata__'):
    s, e = h[k]['data_offsets']
    c = zlib.crc32(k.encode() + b'\0' + h[k]['dtype'].encode() + b'\0' +
                   ('[' + ','.join(str(x) for x in h[k]['shape']) + ']').encode() + b'\0' + bytes(d[s:e]), c)
m['data_crc32'] = '%08x' % c
c = 0
for k in sorted(k for k in m if k != 'meta_crc32'):
    c = zlib.crc32(k.encode() + b'\0' + m[k].encode() + b'\0', c)
m['meta_crc32'] = '%08x' % c
t = json.dumps(h, separators=(',', ':')).encode()
t += b' ' * (-len(t) % 8)
open(p, 'wb').write(struct.pack('<Q', len(t)) + t + bytes(d))
PY
}
edit_st rec.st "cfg = json.loads(m['config']); cfg['init'] = '1.5'; m['config'] = json.dumps(cfg, separators=(',', ':'))"
check resume-recorded-init train_mnist 2 \
  "^train_mnist: error: --resume rec.st: its recorded --init \(give --init to set it\): --init: unknown init '1\.5'" -- \
  "${common[@]}" --resume rec.st --epochs 1
check resume-recorded-init-given train_mnist 2 "^train_mnist: error: --init: unknown init 'x'" -- \
  "${common[@]}" --resume rec.st --epochs 1 --init x
check eval-recorded-init kiln_eval 2 "^kiln_eval: error: checkpoint rec.st: its recorded options: --init: unknown init '1\.5'" -- \
  rec.st --data-dir "$KILN_TEST_DATA"
# A NaN logit is the prediction, as torch.argmax and the trainer's evaluation take it (kiln_eval
# skipped it: 0.232 where the trainer and torch said 0.230): class 3's bias NaN, every row
# predicts 3, and the accuracy is the share of 3s among the first 200 test labels.
"$KILN_BIN/train_mnist" "${common[@]}" --train-limit 100 --model mlp --width 8 --epochs 0 --save nanb.st >/dev/null 2>&1
edit_st nanb.st "o = h['5.bias']['data_offsets'][0] + 12; d[o:o + 4] = struct.pack('<f', float('nan'))"
threes=$(python3 -c "import gzip; d = gzip.open('$KILN_TEST_DATA/mnist/t10k-labels-idx1-ubyte.gz').read()[8:208]; print('%.4f' % (d.count(3) / 200))")
check eval-nan-logit kiln_eval 0 "acc=$threes\$" -- nanb.st --data-dir "$KILN_TEST_DATA" --test-limit 200
# A bad flag is a usage error (2) naming it, whatever the checkpoint (they were checked after
# reading it: a missing file said "cannot open", exit 1).
check eval-bad-device kiln_eval 2 '--device gpu: expected auto\|cpu\|cuda' -- missing.st --device gpu
check eval-negative-limit kiln_eval 2 '--test-limit -5: must be >= 0' -- missing.st --test-limit -5
# A misspelt flag gets the training apps' suggestion: near misses of the name without its
# dashes ('--s' was "did you mean '--split'?", its dashes counted as letters; until 2026-12-07).
check eval-flag-near kiln_eval 2 "unexpected argument '--splt' \(did you mean '--split'\?\)" -- missing.st --splt test
check eval-flag-short kiln_eval 2 "unexpected argument '--s'\$" -- missing.st --s test
# ... and PyTorch's names for its flags, from the training apps' table (it had none: --gpu no
# suggestion)
check eval-flag-gpu kiln_eval 2 "unexpected argument '--gpu' \(did you mean '--device'\?\)" -- missing.st --gpu
check eval-flag-data-path kiln_eval 2 "unexpected argument '--data-path' \(did you mean '--data-dir'\?\)" -- missing.st --data-path d

# A recorded relative --data-dir read from another directory: the error says whose it is and
# what to pass (it advised downloading the data).
(mkdir -p w && cd w && ln -s "$KILN_TEST_DATA" d &&
  "$KILN_BIN/train_mnist" --device cpu --data-dir d --train-limit 100 --model mlp --width 8 --epochs 0 --save ../rel.st >/dev/null 2>&1)
check eval-recorded-data-dir kiln_eval 1 "^kiln_eval: error: checkpoint rel.st's recorded --data-dir d \(pass --data-dir\): mnist/test: cannot find" -- rel.st
check eval-given-data-dir kiln_eval 1 "^kiln_eval: error: mnist/test: cannot find" -- rel.st --data-dir d
# ... but an absolute one, or an error other than a missing file, is left as it is (the prefix
# pointed at the directory for a truncated file in the right one)
mkdir -p abs/mnist && cp "$KILN_TEST_DATA"/mnist/* abs/mnist/
"$KILN_BIN/train_mnist" --device cpu --data-dir "$PWD/abs" --train-limit 100 --model mlp --width 8 --epochs 0 --save abs.st >/dev/null 2>&1
head -c 1000 "$KILN_TEST_DATA/mnist/t10k-images-idx3-ubyte.gz" > abs/mnist/t10k-images-idx3-ubyte.gz
check eval-recorded-abs-data-dir kiln_eval 1 "^kiln_eval: error: $PWD/abs/mnist/t10k-images-idx3-ubyte.gz: " -- abs.st

# scripts/time_to_acc.sh: a bad SEEDS is a usage error (exit 2; "--" first keeps the default 5),
# a failed run's line names its error (stderr, not the banner), and a seed short of the target
# makes the exit status 1.
tta() { KILN_BIN=$KILN_BIN DATA_DIR=$KILN_TEST_DATA bash "$KILN_SRC/scripts/time_to_acc.sh" "$@" >out 2>err; }
ttaflags=(--device cpu --model mlp --width 16 --train-limit 500 --test-limit 200 --epochs 4 --threads 1
          --cuda-graphs off --schedule constant --batch-size 64)
tta x; rc=$?
[ "$rc" = 2 ] && grep -q "^time_to_acc: SEEDS 'x': want a positive integer" err ||
  { echo "FAIL time-to-acc-seeds: exit $rc"; cat out err; fail=1; }
TARGET=0.25 tta 1 -- "${ttaflags[@]}" --lr 0.01; rc=$?
[ "$rc" = 0 ] && grep -q "^target 0.25 reached by 1/1 seeds" out ||
  { echo "FAIL time-to-acc-met: exit $rc"; cat out err; fail=1; }
TARGET=0.3 tta 2 -- "${ttaflags[@]}" --lr 1000; rc=$?
[ "$rc" = 1 ] && [ "$(grep -c '^seed [12]: run failed (train_mnist: error: training diverged' out)" = 2 ] &&
  grep -q '^NOT MET: 2 of 2 seeds did not reach 0.3$' out ||
  { echo "FAIL time-to-acc-failed: exit $rc"; cat out err; fail=1; }
exit $fail
