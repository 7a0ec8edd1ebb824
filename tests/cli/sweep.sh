#!/usr/bin/env bash
# sweep on the committed MNIST subset: a 6-trial random sweep writes 6 results; killed midway
# and resumed it finishes with no trial recorded twice; two workers (0/2, 1/2) in parallel split
# the trials with none lost or duplicated; bad sweep files exit 2 naming file and key.
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_TEST_DATA:?}"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
cd "$tmp"
cat > s.yaml <<YAML
# 6 random trials of a small MLP (a test fixture, not an experiment)
method: random
seed: 3
run_cap: 6
metric: {name: test_acc, goal: maximize}
base: {model: mlp, width: 32, epochs: 1, train_limit: 2000, optimizer: sgd, schedule: constant, momentum: 0.9}
parameters:
  lr: {min: 0.001, max: 0.3, distribution: log_uniform}
  batch_size: {values: [32, 64]}
YAML
common=(--device cpu --data-dir "$KILN_TEST_DATA")
sed 's/seed: 3/seed: 4/' s.yaml > s-other.yaml

# usage_error WHAT PATTERN ARGS...: sweep ARGS exits 2 with PATTERN (grep) on stderr
usage_error() {
  local what=$1 pattern=$2 rc
  shift 2
  set +e
  "$KILN_BIN/sweep" "$@" > /dev/null 2> err.txt
  rc=$?
  set -e
  [ $rc -eq 2 ] && grep -q -- "$pattern" err.txt || { echo "FAIL: $what rc=$rc"; cat err.txt; exit 1; }
}

# ids in results.jsonl, sorted, one line
ids() { python3 -c "import json,sys; print(' '.join(str(t) for t in sorted(json.loads(l)['trial'] for l in open(sys.argv[1]) if l.strip())))" "$1"; }

# 1. a whole sweep
"$KILN_BIN/sweep" s.yaml --dir full "${common[@]}" > full.txt 2> full.err
cat full.txt
# ranking on the test set (the default metric) is said once; not with a val_ metric (below)
grep -q '^sweep: note: trials are ranked on the test set (metric test_acc): .*metric val_acc with --val-split 0.1' full.err ||
  { echo "FAIL: no test-set note"; cat full.err; exit 1; }
[ "$(ids full/results.jsonl)" = "0 1 2 3 4 5" ] || { echo "FAIL: results $(ids full/results.jsonl)"; exit 1; }
# the trials' device line, as train_mnist prints it (a sweep printed none)
[ "$(sed -n 2p full.txt)" = "$("$KILN_BIN/train_mnist" "${common[@]}" --model mlp --width 8 --epochs 0 --train-limit 10 --test-limit 10 2>/dev/null | head -1)" ] &&
  grep -q '^device: cpu, ' full.txt || { echo "FAIL: sweep device line: $(sed -n 2p full.txt)"; exit 1; }
# A parameter that sets the threads (or the device) per trial is named: the line's are the
# base's, which those trials do not run with (it said '2 threads' for trials of 1).
cat > th.yaml <<YAML
method: grid
metric: {name: test_acc, goal: maximize}
base: {model: mlp, width: 8, epochs: 1, train_limit: 64, test_limit: 64}
parameters:
  threads: {values: [1]}
YAML
"$KILN_BIN/sweep" th.yaml --dir th "${common[@]}" > th.txt 2>/dev/null
grep -q "^device: cpu, .*; parameter 'threads' sets threads per trial$" th.txt ||
  { echo "FAIL: sweep device line with threads swept: $(sed -n 2p th.txt)"; exit 1; }
# each record names the test set it was scored on (a --resume on other data is then noted)
[ "$(grep -c '"test_data":"500 images, labels crc32 [0-9a-f]*"' full/results.jsonl)" = 6 ] ||
  { echo "FAIL: records lack their test set"; head -2 full/results.jsonl; exit 1; }
[ "$(grep -c '^trial,' full/results.csv)" -eq 1 ] && [ "$(wc -l < full/results.csv)" -eq 7 ] ||
  { echo "FAIL: results.csv"; cat full/results.csv; exit 1; }
grep -q '^leaderboard' full.txt && grep -q '^parameter importance' full.txt || { echo "FAIL: tables"; exit 1; }

# 2. kill midway, then --resume
"$KILN_BIN/sweep" s.yaml --dir killed "${common[@]}" > killed.txt 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 1 3000); do  # up to 60 s: CI runs tests two at a time on 2 cores
  [ -s killed/results.jsonl ] && break
  sleep 0.02
done
kill -9 "$pid" 2>/dev/null || { echo "FAIL: the sweep finished before it could be killed"; exit 1; }
wait "$pid" 2>/dev/null || true
before=$(grep -c . killed/results.jsonl)
[ "$before" -ge 1 ] && [ "$before" -lt 6 ] || { echo "FAIL: $before results when killed"; exit 1; }
# --dry-run --resume marks the trials the directory has recorded (the run skips them; it listed
# them as any other until 2026-12-07), and with --worker i/N lists that worker's share only.
"$KILN_BIN/sweep" s.yaml --dir killed --resume --dry-run "${common[@]}" > dr.txt
[ "$(grep -c '^trial [0-9]*:.* (recorded: [a-z]*)$' dr.txt)" = "$before" ] && [ "$(grep -c '^trial ' dr.txt)" = 6 ] &&
  grep -q "^killed: $before of them recorded, which the run skips$" dr.txt ||
  { echo "FAIL: --dry-run --resume"; cat dr.txt; exit 1; }
"$KILN_BIN/sweep" s.yaml --dir killed --resume --dry-run --worker 1/2 "${common[@]}" > dr2.txt
[ "$(grep '^trial ' dr2.txt | cut -d: -f1 | tr '\n' ,)" = "trial 1,trial 3,trial 5," ] &&
  grep -q '^worker 1/2: the trials whose id % 2 is 1, 3 of them$' dr2.txt ||
  { echo "FAIL: --dry-run --worker 1/2"; cat dr2.txt; exit 1; }
# A worker skips recorded trials without --resume too; and the dry run refuses what the run
# refuses of DIR: other run options, a file where DIR should be.
# Neither flag: the run refuses a DIR that holds results, and so does the dry run (it listed every
# trial, exit 0, until 2026-12-07), as it refuses a file at DIR or another sweep's DIR.
usage_error "--dry-run of a DIR with results, without --resume" \
  "killed already holds $before results; pass --resume" s.yaml --dir killed --dry-run --worker 0/1 "${common[@]}"
usage_error "--dry-run without --resume, another sweep file" "killed holds a different sweep .*differs from s-other.yaml" \
  s-other.yaml --dir killed --dry-run "${common[@]}"
: > afile0
usage_error "--dry-run with a file as DIR" "afile0: not a directory" s.yaml --dir afile0 --dry-run "${common[@]}"
"$KILN_BIN/sweep" s.yaml --dir killed --dry-run --worker 0/2 "${common[@]}" > dr3.txt
[ "$(grep -c '(recorded: [a-z]*)$' dr3.txt)" = "$(python3 -c "import json,sys; print(sum(json.loads(l)['trial'] % 2 == 0 for l in open('killed/results.jsonl') if l.strip()))")" ] ||
  { echo "FAIL: --dry-run --worker 0/2 without --resume"; cat dr3.txt; exit 1; }
usage_error "--dry-run --resume with other run options" "killed holds trials run with other options (--epochs 1 -> 2)" \
  s.yaml --dir killed --resume --dry-run --epochs 2 "${common[@]}"
: > afile
usage_error "--dry-run --resume with a file as DIR" "afile: not a directory" s.yaml --dir afile --resume --dry-run "${common[@]}"
[ "$(grep -c . killed/results.jsonl)" = "$before" ] || { echo "FAIL: a dry run recorded a trial"; exit 1; }
"$KILN_BIN/sweep" s.yaml --dir killed --resume "${common[@]}" > resumed.txt
cat resumed.txt
grep -q "ran $((6 - before)) trials here; $before already done" resumed.txt || { echo "FAIL: resume counts"; exit 1; }
[ "$(ids killed/results.jsonl)" = "0 1 2 3 4 5" ] || { echo "FAIL: after resume $(ids killed/results.jsonl)"; exit 1; }
# Same seed, same trials: the resumed sweep's parameters match the uninterrupted one.
cmp <(cut -d, -f1,4,5 full/results.csv | sort) <(cut -d, -f1,4,5 killed/results.csv | sort) ||
  { echo "FAIL: resumed trials differ from the full sweep"; exit 1; }
# Without --resume a directory with results is refused (exit 2).
set +e
"$KILN_BIN/sweep" s.yaml --dir killed "${common[@]}" > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q -- '--resume' err.txt || { echo "FAIL: rerun without --resume: rc=$rc"; cat err.txt; exit 1; }
# --resume with other run options would rank trials of two recipes in one leaderboard.
set +e
"$KILN_BIN/sweep" s.yaml --dir killed --resume --epochs 2 "${common[@]}" > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q -- 'holds trials run with other options (--epochs 1 -> 2)' err.txt ||
  { echo "FAIL: resume with other options: rc=$rc"; cat err.txt; exit 1; }
# Another sweep file is refused naming where it parts from the directory's copy: a change at the
# end of a long line is shown (both sides were cut at 57 characters, the same text), and a line
# added at the end, or the final newline gone, is named as such.
sed 's/momentum: 0.9}/momentum: 0.5}/' s.yaml > s-long.yaml
usage_error "--resume with a long line changed" \
  "differs from s-long.yaml at line 6: '\.\.\.[^']*momentum: 0\.9}' -> '\.\.\.[^']*momentum: 0\.5}')" \
  s-long.yaml --dir killed --resume "${common[@]}"
{ cat s.yaml; echo; } > s-blank.yaml
usage_error "--resume with a blank line added" "differs from s-blank.yaml at line 10: the end of the file -> an empty line)" \
  s-blank.yaml --dir killed --resume "${common[@]}"
usage_error "--dry-run --resume with another sweep file" "killed holds a different sweep .*differs from s-long.yaml" \
  s-long.yaml --dir killed --resume --dry-run "${common[@]}"
printf '%s' "$(cat s.yaml)" > s-nonl.yaml
usage_error "--resume with the final newline gone" "differs from s-nonl.yaml at the end of the file: a final newline -> none)" \
  s-nonl.yaml --dir killed --resume "${common[@]}"

# 2b. "every trial failed" judges the whole sweep: a worker whose shard failed while the other's
# trials are unrecorded exits 0 with a note (it exited 1); the worker that records the last
# trial, all failed, exits 1.
cat > bad.yaml <<YAML
method: grid
base: {model: mlp, width: 8, epochs: 1, train_limit: 200, test_limit: 50, optimizer: sgd, schedule: constant}
parameters:
  lr: {values: [1e30, 1e29]}
YAML
"$KILN_BIN/sweep" bad.yaml --dir badw --worker 1/2 "${common[@]}" > /dev/null 2> wb1.txt ||
  { echo "FAIL: a worker with only its own failures exited $?"; cat wb1.txt; exit 1; }
grep -q 'recorded so far all failed; 1 of 2 are not recorded yet' wb1.txt || { echo "FAIL: worker note"; cat wb1.txt; exit 1; }
set +e
"$KILN_BIN/sweep" bad.yaml --dir badw --worker 0/2 "${common[@]}" > /dev/null 2> wb0.txt
rc=$?
set -e
[ $rc -eq 1 ] && grep -q 'all 2 trials failed' wb0.txt || { echo "FAIL: the last worker rc=$rc"; cat wb0.txt; exit 1; }

# 3. two workers in parallel
"$KILN_BIN/sweep" s.yaml --dir shared --worker 0/2 "${common[@]}" > w0.txt &
p0=$!
pids+=("$p0")
"$KILN_BIN/sweep" s.yaml --dir shared --worker 1/2 "${common[@]}" > w1.txt &
p1=$!
pids+=("$p1")
wait "$p0"
wait "$p1"
[ "$(ids shared/results.jsonl)" = "0 1 2 3 4 5" ] || { echo "FAIL: workers $(ids shared/results.jsonl)"; exit 1; }
grep -q 'ran 3 trials here' w0.txt && grep -q 'ran 3 trials here' w1.txt || { echo "FAIL: worker split"; cat w0.txt w1.txt; exit 1; }
[ "$(grep -c '^trial,' shared/results.csv)" -eq 1 ] || { echo "FAIL: csv header written twice"; exit 1; }
[ -z "$(ls shared/locks)" ] || { echo "FAIL: locks left: $(ls shared/locks)"; exit 1; }

# 4. importance and the report of a finished sweep, and usage errors
"$KILN_BIN/sweep" --importance full | grep '^lr ' >/dev/null || { echo "FAIL: --importance"; exit 1; }
"$KILN_BIN/sweep" --report full > report.txt
grep -q '^leaderboard' report.txt && grep -q '^parameter importance' report.txt &&
  ! grep -q '^over seeds' report.txt || { echo "FAIL: --report of a random sweep"; cat report.txt; exit 1; }
# A grid over two seeds: the over-seeds table has one row per lr, two seeds each.
cat > seeds.yaml <<YAML
method: grid
base: {model: mlp, width: 16, epochs: 1, train_limit: 500, test_limit: 200, optimizer: sgd, schedule: constant}
parameters:
  lr: {values: [0.1, 0.01]}
  seed: {values: [0, 1]}
YAML
"$KILN_BIN/sweep" seeds.yaml --dir seeds "${common[@]}" > seeds.txt
# columns: rank lr n mean std min max not-ok
[ "$(sed -n '/^over seeds/,$p' seeds.txt | awk '$1 ~ /^[12]$/ && ($2 == "0.1" || $2 == "0.01") && $3 == 2' | wc -l)" -eq 2 ] ||
  { echo "FAIL: over-seeds table"; cat seeds.txt; exit 1; }
"$KILN_BIN/sweep" --report seeds | sed -n '/^over seeds/,$p' | cmp - <(sed -n '/^over seeds/,$p' seeds.txt) ||
  { echo "FAIL: --report differs from the sweep's own table"; exit 1; }
printf 'method: grid\nparameters:\n  learning_rate: {values: [0.1]}\n' > bad.yaml
set +e
"$KILN_BIN/sweep" bad.yaml --dir bad "${common[@]}" > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "bad.yaml: parameter 'learning_rate'" err.txt || { echo "FAIL: bad.yaml rc=$rc"; cat err.txt; exit 1; }
set +e
"$KILN_BIN/sweep" s.yaml --dir clash --lr 0.1 "${common[@]}" > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "^sweep: error: --lr: 'lr' is a parameter of s.yaml; it cannot also be set on the command line$" err.txt ||
  { echo "FAIL: --lr on a swept parameter rc=$rc"; cat err.txt; exit 1; }
# A --config file's bad value is named as the file's key (the sweep named only its own file and
# the command line).
printf 'width: 0\n' > w0.yaml
set +e
"$KILN_BIN/sweep" s.yaml --config w0.yaml "${common[@]}" > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "^sweep: error: w0.yaml: key 'width': every trial of s.yaml has invalid options" err.txt ||
  { echo "FAIL: a --config file's bad value rc=$rc"; cat err.txt; exit 1; }
# A forgotten value does not take the next flag for it: --dir --dry-run ran every trial into a
# directory named --dry-run.
set +e
"$KILN_BIN/sweep" s.yaml --dir --dry-run "${common[@]}" > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q '^sweep: error: --dir needs a value, got the flag --dry-run' err.txt && [ ! -e ./--dry-run ] ||
  { echo "FAIL: --dir --dry-run rc=$rc"; cat err.txt; exit 1; }
# ... nor from a --config file (the trials' lr silently won); an output no trial can write is
# refused before any trial runs (every trial failed, and --resume then skipped them all);
# --report takes nothing else (it ignored a sweep file, --worker 5/2, run options).
printf 'lr: 0.5\n' > lr.yaml
for args in "--config lr.yaml" "--save missing/x.safetensors" "--checkpoint-dir /proc/kiln-ck"; do
  set +e
  # shellcheck disable=SC2086
  "$KILN_BIN/sweep" s.yaml --dir clash2 $args "${common[@]}" > /dev/null 2> err.txt
  rc=$?
  set -e
  [ $rc -eq 2 ] && [ ! -e clash2/results.jsonl ] && [ "$(grep -c 'sweep: error:' err.txt)" -eq 1 ] ||
    { echo "FAIL: sweep $args rc=$rc"; cat err.txt; exit 1; }
done
# ... but a --save directly in the sweep's own --dir, which the sweep makes, is no error on a
# fresh run ("directory does not exist" before; a rerun passed), whatever the dir's spelling.
printf 'method: grid\nbase: {model: mlp, width: 8, epochs: 1, train_limit: 200, test_limit: 100}\nparameters:\n  lr: {values: [0.1]}\n' > one.yaml
"$KILN_BIN/sweep" one.yaml --dir ./insd/ --save insd/m.safetensors "${common[@]}" > /dev/null 2> err.txt ||
  { echo "FAIL: --save in a fresh --dir"; cat err.txt; exit 1; }
[ -s insd/m.trial-0.safetensors ] || { echo "FAIL: --save in --dir wrote no model"; ls insd; exit 1; }
usage_error "--save in a subfolder of a fresh --dir" "directory insd2/sub does not exist" one.yaml --dir insd2 --save insd2/sub/m.safetensors "${common[@]}"
[ ! -e insd2 ] || { echo "FAIL: a refused sweep made its directory"; exit 1; }
grep -q "lr.yaml: key 'lr': 'lr' is a parameter of s.yaml" <("$KILN_BIN/sweep" s.yaml --config lr.yaml "${common[@]}" 2>&1) ||
  { echo "FAIL: --config message"; exit 1; }
for args in "s.yaml" "--worker 5/2" "--lr 0.1" "--importance seeds"; do
  set +e
  # shellcheck disable=SC2086
  "$KILN_BIN/sweep" --report seeds $args > /dev/null 2> err.txt
  rc=$?
  set -e
  [ $rc -eq 2 ] || { echo "FAIL: --report seeds $args rc=$rc"; cat err.txt; exit 1; }
done
# Selecting on a validation split (metric val_acc): each result holds val_acc next to test_acc.
cat > val.yaml <<YAML
method: grid
metric: {name: val_acc}
base: {model: mlp, width: 16, epochs: 1, train_limit: 500, test_limit: 200, optimizer: sgd, schedule: constant}
parameters:
  lr: {values: [0.1, 0.01]}
YAML
"$KILN_BIN/sweep" val.yaml --dir val --val-split 0.2 "${common[@]}" > val.txt 2> val.err
grep -q 'ranked on the test set' val.err && { echo "FAIL: test-set note under val_acc"; exit 1; }
python3 - val/results.jsonl <<'PY' || { echo "FAIL: val_acc results"; cat val.txt; exit 1; }
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(rs) == 2 and all(r["metric"] == r["val_acc"] and 0 < r["val_acc"] <= 1 and
                            r["val_acc"] * 100 == round(r["val_acc"] * 100) for r in rs), rs  # 100 samples
PY
grep -q '^leaderboard (val_acc' val.txt || { echo "FAIL: val leaderboard"; cat val.txt; exit 1; }
# A sweep file read from a pipe is kept as DIR/sweep.yaml all the same (it was read twice, the
# second read came back empty, and the directory then took any other sweep's --resume).
"$KILN_BIN/sweep" <(cat val.yaml) --dir piped --val-split 0.2 "${common[@]}" > /dev/null 2> err.txt ||
  { echo "FAIL: sweep from a pipe"; cat err.txt; exit 1; }
cmp -s piped/sweep.yaml val.yaml || { echo "FAIL: piped/sweep.yaml is not the sweep file"; exit 1; }
sed 's/0.01\]/0.02]/' val.yaml > val2.yaml
usage_error "--resume of another sweep into a piped one's directory" "holds a different sweep" \
  val2.yaml --dir piped --resume --val-split 0.2 "${common[@]}"
set +e
"$KILN_BIN/sweep" val.yaml --dir nosplit "${common[@]}" > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "metric val_acc needs a validation split" err.txt ||
  { echo "FAIL: val_acc without a split rc=$rc"; cat err.txt; exit 1; }
[ ! -e nosplit ] || { echo "FAIL: the refused sweep left nosplit/ behind"; exit 1; }
# --dry-run refuses it too (it listed the trials, exit 0, until 2026-12-04).
usage_error "--dry-run of val_acc without a split" "metric val_acc needs a validation split" val.yaml --dry-run
# An option inside a grouped parameter cannot be set on the command line either (it was
# silently overridden), nor --log (each trial has its own); a trial's log lines (here the
# --grad-report table) go to trials/trial-<id>.log.
cat > group.yaml <<YAML
method: grid
base: {model: mlp, width: 16, epochs: 1, train_limit: 300, test_limit: 100, optimizer: sgd, schedule: constant}
parameters:
  batch_and_lr:
    values:
      - {batch_size: 16, lr: 0.01}
YAML
for flag in "--batch-size 8" "--log x.jsonl" "--width 0"; do
  set +e
  # shellcheck disable=SC2086
  "$KILN_BIN/sweep" group.yaml --dir group $flag "${common[@]}" > /dev/null 2> err.txt
  rc=$?
  set -e
  # (--width 0 fails every trial: refused before any runs, naming the option)
  [ $rc -eq 2 ] && grep -q -- "${flag% *}" err.txt || { echo "FAIL: $flag rc=$rc"; cat err.txt; exit 1; }
done
"$KILN_BIN/sweep" group.yaml --dir group --grad-report "${common[@]}" > group.txt
grep -q '"batch_size":16' group/trials/trial-0.jsonl && grep -q 'per-layer norms' group/trials/trial-0.log ||
  { echo "FAIL: grouped trial or its log"; cat group.txt; ls group/trials; exit 1; }
! grep -q 'per-layer norms' group.txt || { echo "FAIL: the table went to the sweep output"; exit 1; }
# An unknown option is named (its value was taken for a second sweep file); --dir=D works.
set +e
"$KILN_BIN/sweep" s.yaml --epoch 3 "${common[@]}" > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "unknown option 'epoch' (did you mean 'epochs'?)" err.txt || { echo "FAIL: unknown option rc=$rc"; cat err.txt; exit 1; }
set +e
"$KILN_BIN/sweep" s.yaml --dry-run -- --seed 3 > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "a bare '--'" err.txt || { echo "FAIL: bare -- rc=$rc"; cat err.txt; exit 1; }
# --dry-run=true lists the trials as --dry-run does, like a run's --shuffle=true (it was an
# unknown option); a word that is no boolean is named.
"$KILN_BIN/sweep" s.yaml --dry-run=true "${common[@]}" > dry.txt 2> err.txt && [ ! -e dry ] &&
  [ "$(grep -c '^trial' dry.txt)" = "$("$KILN_BIN/sweep" s.yaml --dry-run "${common[@]}" | grep -c '^trial')" ] &&
  [ "$(grep -c '^trial' dry.txt)" -gt 0 ] || { echo "FAIL: --dry-run=true"; cat dry.txt err.txt; exit 1; }
usage_error "--dry-run=maybe" "^sweep: error: --dry-run: 'maybe' is not a boolean" s.yaml --dry-run=maybe
usage_error "--dry-run false" "^sweep: error: --dry-run takes no value (it got 'false'): write --dry-run or --no-dry-run, or --dry-run=false" \
  s.yaml --dry-run false
usage_error "--resume ck.safetensors" "^sweep: error: sweep's --resume takes no value .*put resume: ck.safetensors under the sweep file's base" \
  s.yaml --resume ck.safetensors
usage_error "-v" "^sweep: error: unknown option '-v'" s.yaml -v
usage_error "--shuffle false" "^sweep: error: --shuffle takes no value (it got 'false'): write --shuffle or --no-shuffle, or --shuffle=false" \
  s.yaml --shuffle false
# and its negated form ("--no-shuffle false" was "more than one sweep file", "=false" an unknown
# option)
usage_error "--no-shuffle false" "^sweep: error: --no-shuffle takes no value (it got 'false'): write --no-shuffle or --shuffle, or --shuffle=true|false" \
  s.yaml --no-shuffle false
usage_error "--no-shuffle=false" "^sweep: error: --no-shuffle takes no value (it got 'false'): write --no-shuffle or --shuffle, or --shuffle=true|false" \
  s.yaml --no-shuffle=false
# sweep's own flags alike: "--no-dry-run false" and "--resume false" were "more than one sweep
# file", "--no-dry-run=true" an unknown option, "--resume=true" a checkpoint for the base
usage_error "--no-dry-run false" "^sweep: error: --no-dry-run takes no value (it got 'false'): write --no-dry-run or --dry-run, or --dry-run=true|false" \
  s.yaml --no-dry-run false
usage_error "--no-dry-run=true" "^sweep: error: --no-dry-run takes no value (it got 'true'): write --no-dry-run or --dry-run, or --dry-run=true|false" \
  s.yaml --no-dry-run=true
usage_error "--resume false" "^sweep: error: sweep's --resume takes no value (it got 'false'): give --resume to continue the sweep in --dir, or leave it out" \
  s.yaml --resume false
usage_error "--resume=true" "^sweep: error: sweep's --resume takes no value (it got 'true'): give --resume to continue the sweep in --dir, or leave it out" \
  s.yaml --resume=true
# --no-dry-run turns it off (--report refuses --dry-run): it was an unknown option
"$KILN_BIN/sweep" --report full --dry-run --no-dry-run > /dev/null 2> err.txt || { echo "FAIL: --no-dry-run"; cat err.txt; exit 1; }
# --dry-run refuses what a run refuses: a bundle named like a column of the results.
printf 'parameters:\n  test_acc: {values: [{lr: 0.1}]}\n' > clash.yaml
usage_error "--dry-run of a bundle named test_acc" \
  "clash.yaml: parameter 'test_acc': the name of one of the results' own columns" clash.yaml --dry-run
# sweep's --resume takes no value: --resume=F was passed to every trial as the run option.
set +e
"$KILN_BIN/sweep" s.yaml --dry-run --resume=ck.safetensors > /dev/null 2> err.txt
rc=$?
"$KILN_BIN/sweep" s.yaml --dry-run --worker 2/2 > /dev/null 2> err2.txt
rc2=$?
set -e
[ $rc -eq 2 ] && grep -q "sweep's --resume takes no value .*put resume: ck.safetensors under the sweep file's base" err.txt ||
  { echo "FAIL: --resume=F rc=$rc"; cat err.txt; exit 1; }
[ $rc2 -eq 2 ] && grep -q -- "--worker" err2.txt || { echo "FAIL: --dry-run --worker 2/2 rc=$rc2"; cat err2.txt; exit 1; }
# An option the trials never read (a swept --momentum under adam, a base --gamma under cosine) is
# noted once on the console with how many trials have it, and in each such trial's log.
cat > ign.yaml <<YAML
method: grid
base: {model: mlp, width: 16, epochs: 1, train_limit: 300, test_limit: 100, optimizer: adam, schedule: cosine, gamma: 0.5}
parameters:
  momentum: {values: [0.0, 0.9]}
YAML
"$KILN_BIN/sweep" ign.yaml --dir=ign "${common[@]}" > ign.txt 2> err.txt
grep -q '^sweep: note: --momentum 0.9 is ignored: adam has no momentum option .*\[trial 1; 1 of 2 trials\]$' err.txt &&
  grep -q '^sweep: note: --gamma is ignored by --schedule cosine .*\[trial 0; 2 of 2 trials\]$' err.txt ||
  { echo "FAIL: sweep notes"; cat err.txt; exit 1; }
grep -q '^note: --momentum 0.9 is ignored' ign/trials/trial-1.log && ! grep -q 'momentum' ign/trials/trial-0.log ||
  { echo "FAIL: trial log notes"; cat ign/trials/trial-*.log; exit 1; }
# A SIGINT while a finished trial waits for the results lock (another worker holds it): the wait
# resumes, the trial is recorded, and the sweep stops with 130 (an interrupted flock was a
# runtime error that lost the trial).
cat > one.yaml <<YAML
method: grid
base: {model: mlp, width: 32, epochs: 2, train_limit: 2000, test_limit: 200, optimizer: sgd, schedule: constant}
parameters:
  lr: {values: [0.01, 0.02]}
YAML
mkdir held
python3 - "$KILN_BIN/sweep" "$KILN_TEST_DATA" <<'PY' || exit 1
import fcntl, json, os, signal, subprocess, sys, time
sweep, data = sys.argv[1], sys.argv[2]
p = subprocess.Popen([sweep, "one.yaml", "--dir", "held", "--device", "cpu", "--data-dir", data],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
log = "held/trials/trial-0.jsonl"
for _ in range(30000):  # trial 0 has started (its log exists; two epochs of 2,000 images to go)
    if os.path.exists(log):
        break
    time.sleep(0.002)
f = open("held/results.jsonl", "a")
fcntl.flock(f, fcntl.LOCK_EX)
for _ in range(3000):  # both epochs done: next comes the record, which waits for the lock
    if open(log).read().count('"type":"epoch"') == 2:
        break
    time.sleep(0.02)
time.sleep(0.5)
p.send_signal(signal.SIGINT)
time.sleep(0.3)
fcntl.flock(f, fcntl.LOCK_UN)
f.close()
err = p.communicate(timeout=120)[1].decode()
recs = [json.loads(l) for l in open("held/results.jsonl") if l.strip()]
if p.returncode != 130 or [r["trial"] for r in recs] != [0]:
    print("FAIL: SIGINT during the results lock: exit %d, trials %s\n%s" % (p.returncode, [r["trial"] for r in recs], err))
    sys.exit(1)
PY

# resume: FILE in the base: every trial continues the checkpoint's recipe (the options the sweep
# leaves out, as train_mnist --resume takes them); it ran the apps' defaults on all the data
# until 2026-12-07. A model or --epochs the checkpoint cannot continue exits 2 before any trial.
"$KILN_BIN/train_mnist" "${common[@]}" --train-limit 200 --test-limit 100 --model mlp --width 16 \
  --batch-size 50 --epochs 2 --schedule constant --lr 0.1 --optimizer sgd --save k.safetensors > /dev/null 2>&1
printf 'method: grid\nbase: {resume: k.safetensors, epochs: 3}\nparameters:\n  momentum: {values: [0.0, 0.5]}\n' > rs.yaml
"$KILN_BIN/sweep" rs.yaml --dir rs "${common[@]}" > rs.txt 2> rs.err &&
  grep -q "^sweep: note: continuing k.safetensors's run with the options it recorded that the sweep leaves out: train-limit 200, test-limit 100, model mlp, width 16, optimizer sgd, lr 0.1, schedule constant, batch-size 50$" rs.err &&
  [ "$(grep -c ': ok test_acc=' rs.txt)" = 2 ] && ! grep -q "options changed" rs/trials/trial-0.log &&
  grep -q "options changed since the checkpoint: momentum 0 -> 0.5$" rs/trials/trial-1.log ||
  { echo "FAIL: a sweep resuming a checkpoint"; cat rs.txt rs.err rs/trials/trial-0.log; exit 1; }
printf 'method: grid\nbase: {resume: k.safetensors, epochs: 3, model: cnn}\nparameters:\n  momentum: {values: [0.0, 0.5]}\n' > rs-cnn.yaml
usage_error "a sweep resuming another model's checkpoint" \
  "every trial of rs-cnn.yaml has invalid options .*first: checkpoint k.safetensors: missing tensor 0.weight" rs-cnn.yaml --dir rs-cnn "${common[@]}"
# another optimizer than the checkpoint's alike (each trial failed loading it and the sweep
# exited 1 after running them all); beside the file's own, that value's trials fail saying why
printf 'method: grid\nbase: {resume: k.safetensors, epochs: 3}\nparameters:\n  optimizer: {values: [adam, rmsprop]}\n' > rs-opt.yaml
usage_error "a sweep resuming a checkpoint with another optimizer" \
  "every trial of rs-opt.yaml has invalid options .*first: checkpoint k.safetensors: saved with optimizer 'sgd', this run uses 'adam'" \
  rs-opt.yaml --dir rs-opt "${common[@]}"
usage_error "a dry run of a sweep resuming a checkpoint with another optimizer" \
  "trial 0 of rs-opt.yaml: checkpoint k.safetensors: saved with optimizer 'sgd', this run uses 'adam'" \
  rs-opt.yaml --dry-run "${common[@]}"
printf 'method: grid\nbase: {resume: k.safetensors, epochs: 3}\nparameters:\n  optimizer: {values: [sgd, adam]}\n' > rs-opt2.yaml
"$KILN_BIN/sweep" rs-opt2.yaml --dir rs-opt2 "${common[@]}" > rs-opt2.txt 2>&1 &&
  python3 - <<'PY' || { echo "FAIL: a sweep listing an optimizer the checkpoint cannot continue"; cat rs-opt2.txt; exit 1; }
import json
r = {x["trial"]: x for x in map(json.loads, open("rs-opt2/results.jsonl"))}
assert r[0]["status"] == "ok", r[0]
assert r[1]["status"] == "failed" and "saved with optimizer 'sgd', this run uses 'adam'" in r[1]["message"], r[1]
PY
# a mid-epoch checkpoint with other batches alike (a sweep of --batch-size values ran each trial,
# which failed loading it, and exited 1)
"$KILN_BIN/train_mnist" "${common[@]}" --train-limit 200 --test-limit 100 --model mlp --width 16 \
  --batch-size 50 --epochs 2 --optimizer sgd --checkpoint-every-steps 3 --checkpoint-dir rs-mid-ck > /dev/null 2>&1
printf 'method: grid\nbase: {resume: rs-mid-ck/ckpt-step-3.safetensors, epochs: 2}\nparameters:\n  batch_size: {values: [16, 64]}\n' > rs-mid.yaml
usage_error "a sweep resuming a mid-epoch checkpoint with other batches" \
  "every trial of rs-mid.yaml has invalid options .*first: --resume rs-mid-ck/ckpt-step-3.safetensors: a mid-epoch checkpoint (epoch 1, batch 3) continues only with the batches it was cut from: --batch-size 50 -> 16" \
  rs-mid.yaml --dir rs-mid "${common[@]}"
usage_error "a dry run of a sweep resuming a mid-epoch checkpoint with other batches" \
  "trial 0 of rs-mid.yaml: --resume rs-mid-ck/ckpt-step-3.safetensors: a mid-epoch checkpoint" \
  rs-mid.yaml --dry-run "${common[@]}"
printf 'method: grid\nbase: {resume: rs-mid-ck/ckpt-step-3.safetensors, epochs: 2}\nparameters:\n  momentum: {values: [0.0, 0.5]}\n' > rs-mid-ok.yaml
"$KILN_BIN/sweep" rs-mid-ok.yaml --dir rs-mid-ok "${common[@]}" > rs-mid-ok.txt 2>&1 &&
  [ "$(grep -c ': ok test_acc=' rs-mid-ok.txt)" = 2 ] ||
  { echo "FAIL: a sweep continuing a mid-epoch checkpoint with its batches"; cat rs-mid-ok.txt; exit 1; }
# --save FILE gives each trial FILE.trial-<id>.EXT: one that names the sweep file or the resume:
# checkpoint is refused before any trial, and by the dry run (trial 0 wrote its model over the
# sweep file, and trial 1 over the checkpoint the later trials then continued).
cp s.yaml x.trial-0.yaml
usage_error "--save over the sweep file" \
  "^sweep: error: --save x.yaml: trial 0 would write x.trial-0.yaml, the sweep file; name another" \
  x.trial-0.yaml --dir xsave --save x.yaml "${common[@]}"
usage_error "a dry run with --save over the sweep file" \
  "^sweep: error: --save x.yaml: trial 0 would write x.trial-0.yaml, the sweep file" \
  x.trial-0.yaml --dry-run --save x.yaml "${common[@]}"
cp k.safetensors m.trial-1.safetensors
printf 'method: grid\nbase: {resume: m.trial-1.safetensors, epochs: 3}\nparameters:\n  momentum: {values: [0.0, 0.5]}\n' > rs-save.yaml
usage_error "--save over the resume: checkpoint" \
  "^sweep: error: --save m.safetensors: trial 1 would write m.trial-1.safetensors, the resume: file every trial continues; name another" \
  rs-save.yaml --dir rs-save --save m.safetensors "${common[@]}"
cmp -s s.yaml x.trial-0.yaml && cmp -s k.safetensors m.trial-1.safetensors && [ ! -e xsave ] && [ ! -e rs-save ] ||
  { echo "FAIL: a trial's --save replaced the sweep file or the resume: checkpoint"; exit 1; }
# --keep-last prunes the run a trial continues: with the resume: file a periodic checkpoint in
# trial 0's checkpoint directory, trial 0 deleted it and trial 1 failed "cannot open" (exit 1).
"$KILN_BIN/train_mnist" "${common[@]}" --train-limit 200 --test-limit 100 --model mlp --width 16 \
  --epochs 1 --optimizer sgd --checkpoint-every 1 --checkpoint-dir rs-keep-ck/trial-0 > /dev/null 2>&1
printf 'method: grid\nbase: {resume: rs-keep-ck/trial-0/ckpt-epoch-1.safetensors, epochs: 3}\nparameters:\n  momentum: {values: [0.0, 0.5]}\n' > rs-keep.yaml
usage_error "--keep-last pruning the resume: checkpoint" \
  "^sweep: error: --keep-last 1: trial 0 keeps its periodic checkpoints in rs-keep-ck/trial-0, which holds the resume: file every trial continues (rs-keep-ck/trial-0/ckpt-epoch-1.safetensors), and would delete it; name another --checkpoint-dir" \
  rs-keep.yaml --dir rs-keep --checkpoint-dir rs-keep-ck --checkpoint-every 1 --keep-last 1 "${common[@]}"
[ -e rs-keep-ck/trial-0/ckpt-epoch-1.safetensors ] && [ ! -e rs-keep ] ||
  { echo "FAIL: --keep-last deleted the resume: checkpoint"; ls rs-keep-ck/trial-0; exit 1; }
printf 'method: grid\nbase: {resume: k.safetensors, epochs: 1}\nparameters:\n  momentum: {values: [0.0, 0.5]}\n' > rs-done.yaml
usage_error "a sweep resuming a checkpoint with --epochs below it" \
  "first: --epochs 1 with --resume k.safetensors: the checkpoint has done 2 epochs and --epochs counts the whole run: give --epochs 3 or more" \
  rs-done.yaml --dir rs-done "${common[@]}"
# --epochs equal to the checkpoint's leaves no epoch to score: refused up front too (each trial
# ran and failed, "no epoch ran (epochs 0)", and the sweep exited 1, until 2026-12-07); with the
# epochs a parameter, only the trials of the value that cannot train fail, saying why.
printf 'method: grid\nbase: {resume: k.safetensors, epochs: 2}\nparameters:\n  momentum: {values: [0.0, 0.5]}\n' > rs-equal.yaml
usage_error "a sweep resuming a checkpoint with --epochs equal to it" \
  "first: --epochs 2 with --resume k.safetensors: the checkpoint has done 2 epochs, and a sweep's trial is scored by the epochs it trains: give --epochs 3 or more" \
  rs-equal.yaml --dir rs-equal "${common[@]}"
# --epochs 0 scores no trial: refused before the sweep starts, and by --dry-run (each trial ran
# and failed, "no epoch ran", and the sweep exited 1 while its dry run listed them, until
# 2026-12-07).
usage_error "a sweep of --epochs 0" \
  "first: --epochs 0: a sweep's trial is scored by the epochs it trains; give --epochs 1 or more" \
  rs-done.yaml --dir rs-zero "${common[@]}" --epochs 0
usage_error "a dry run of --epochs 0" \
  "trial 0 of rs-done.yaml: --epochs 0: a sweep's trial is scored by the epochs it trains" \
  rs-done.yaml --dry-run "${common[@]}" --epochs 0
# --dry-run makes the same checks, stopping at the first trial (it listed these, exit 0, until
# 2026-12-07).
usage_error "a dry run of a sweep resuming another model's checkpoint" \
  "trial 0 of rs-cnn.yaml: checkpoint k.safetensors: missing tensor 0.weight" rs-cnn.yaml --dry-run "${common[@]}"
usage_error "a dry run of a sweep resuming a checkpoint with --epochs below it" \
  "trial 0 of rs-done.yaml: --epochs 1 with --resume k.safetensors: the checkpoint has done 2 epochs" \
  rs-done.yaml --dry-run "${common[@]}"
[ ! -e rs-cnn ] && [ ! -e rs-done ] && [ ! -e rs-equal ] && [ ! -e rs-zero ] && [ ! -e rs-opt ] && [ ! -e rs-mid ] || { echo "FAIL: a refused sweep wrote its directory"; exit 1; }
printf 'method: grid\nbase: {resume: k.safetensors}\nparameters:\n  epochs: {values: [2, 3]}\n' > rs-mixed.yaml
"$KILN_BIN/sweep" rs-mixed.yaml --dir rs-mixed "${common[@]}" > rs-mixed.txt 2> rs-mixed.err &&
  python3 - <<'PY' || { echo "FAIL: a sweep whose epochs parameter has a value equal to the checkpoint's"; cat rs-mixed.txt rs-mixed.err; exit 1; }
import json
r = {x["trial"]: x for x in map(json.loads, open("rs-mixed/results.jsonl"))}
assert r[0]["status"] == "failed" and "a sweep's trial is scored by the epochs it trains" in r[0]["message"], r[0]
assert r[1]["status"] == "ok" and r[1]["epochs"] == 1, r[1]
PY
# A trial whose own --target-acc already holds against the checkpoint's state trains nothing and
# says why (its message blamed the checkpoint's run until 2026-12-07).
printf 'method: grid\nbase: {resume: k.safetensors, epochs: 3}\nparameters:\n  target_acc: {values: [0.05, 0.999]}\n' > rs-target.yaml
"$KILN_BIN/sweep" rs-target.yaml --dir rs-target "${common[@]}" > rs-target.txt 2>&1 &&
  python3 - <<'PY' || { echo "FAIL: a resumed trial that trains nothing"; cat rs-target.txt; exit 1; }
import json
r = {x["trial"]: x for x in map(json.loads, open("rs-target/results.jsonl"))}
assert r[0]["status"] == "failed" and "the trial's --target-acc or --early-stop held already" in r[0]["message"], r[0]
assert r[1]["status"] == "ok" and r[1]["epochs"] == 1, r[1]
PY
grep -q "target accuracy 0.05 was reached before epoch 3" rs-target/trials/trial-0.log ||
  { echo "FAIL: the trial's log does not say which"; cat rs-target/trials/trial-0.log; exit 1; }
# A worker killed between a trial's record and its lock's unlink leaves the lock of a recorded
# trial; the next --resume drops it when its flock is free (until 2026-12-07 it stayed for good).
cp -r full stale-lock
printf '999999 nohost 0 0 0 flock\n' > stale-lock/locks/trial-2.lock
"$KILN_BIN/sweep" s.yaml --dir stale-lock --resume "${common[@]}" > stale-lock.txt 2>&1 &&
  [ ! -e stale-lock/locks/trial-2.lock ] && cmp -s full/results.jsonl stale-lock/results.jsonl ||
  { echo "FAIL: a recorded trial's stale lock was left, or the records changed"; cat stale-lock.txt; ls stale-lock/locks; exit 1; }
echo "PASS"
