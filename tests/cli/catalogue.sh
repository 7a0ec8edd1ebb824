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
# A misspelt --only name is an error, not an empty catalogue (exit 0 until 2026-12-04).
set +e
KILN_BIN=$KILN_BIN "$cat" "$tmp/c" --only input_normalisation > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q "no experiment 'input_normalisation'" err.txt || { echo "FAIL: --only typo rc=$rc"; cat err.txt; exit 1; }
# DIR that is a file: one line, exit 2 (a cascade of mkdir/tail errors and a traceback before)
touch afile
set +e
KILN_BIN=$KILN_BIN "$cat" afile --only input_normalization -- "${run[@]}" > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && [ "$(cat err.txt)" = "catalogue.sh: afile: not a writable directory" ] ||
  { echo "FAIL: DIR is a file rc=$rc"; cat err.txt; exit 1; }

# Experiments of our own (KILN_SRC): a seeded grid's best is a setting's mean over seeds, not its
# luckiest seed; an experiment whose every trial fails says so; a SIGTERM reaches the sweep
# (timeout had moved it out of the script's process group: it trained on as an orphan).
mkdir -p src/experiments
own() { KILN_SRC=$tmp/src KILN_BIN=$KILN_BIN "$cat" "$@"; }  # on those experiments
cat > src/experiments/seeded.yaml <<YAML
method: grid
base: {model: mlp, width: 8, epochs: 1, train_limit: 300, test_limit: 100, optimizer: sgd, schedule: constant}
parameters:
  lr: {values: [0.3, 0.001]}
  seed: {values: [0, 1, 2]}
YAML
cat > src/experiments/diverges.yaml <<YAML
method: grid
base: {model: mlp, width: 8, epochs: 1, train_limit: 300, test_limit: 100, optimizer: sgd, schedule: constant}
parameters:
  lr: {values: [1e30]}
YAML
set +e
own "$tmp/own" -- --device cpu --data-dir "$KILN_TEST_DATA" > /dev/null 2> err.txt
rc=$?
set -e
cat "$tmp/own/catalogue.md"
[ $rc -eq 1 ] && grep -q 'diverges failed (exit 1)' err.txt || { echo "FAIL: failed experiment rc=$rc"; cat err.txt; exit 1; }
grep -q '^| diverges | 1 (failed, exit 1: see log.txt) |' "$tmp/own/catalogue.md" || { echo "FAIL: failed row"; exit 1; }
python3 - "$tmp/own" <<'PY' || { echo "FAIL: seeded row"; exit 1; }
import json, re, statistics, sys
rs = [json.loads(l) for l in open(sys.argv[1] + "/seeded/results.jsonl") if l.strip()]
by = {}
for r in rs:
    by.setdefault(r["params"]["lr"], []).append(r["metric"])
lr, vals = max(by.items(), key=lambda kv: statistics.mean(kv[1]))
row = [l for l in open(sys.argv[1] + "/catalogue.md") if l.startswith("| seeded |")][0]
want = "| seeded | 6 | lr=%s | test_acc %.4f +- %.4f (mean of 3 seeds) |" % (lr, statistics.mean(vals), statistics.stdev(vals))
assert row.startswith(want), (row, want)
PY
# scripts/catalogue_report.py: the markdown sections EXPERIMENTS.md takes, from the same runs:
# every trial in trial order (a failed one with its reason), the over-seeds means, the
# suggestions; an unfinished experiment marked so.
rep=$KILN_SRC/scripts/catalogue_report.py
python3 "$rep" "$tmp/own" --src "$tmp/src" --device "this CPU" > report.md
python3 - report.md "$tmp/own" "$KILN_TEST_DATA" <<'PY' || { echo "FAIL: catalogue_report.py"; cat report.md; exit 1; }
import json, statistics, sys
text = open(sys.argv[1]).read()
assert "### diverges (failed, exit 1)" in text and "### seeded\n" in text, text
# the command with the run options the catalogue passed (the data directory's name quoted if need be)
import shlex
cmd = "sweep experiments/seeded.yaml --device cpu --data-dir " + shlex.quote(sys.argv[3])
assert "Command: `%s` (via `scripts/catalogue.sh`); measured on this CPU" % cmd in text, text
assert "| trial | lr | seed | status | test_acc | train_acc | weight_sparsity | epochs | seconds |" in text, text
rs = sorted((json.loads(l) for l in open(sys.argv[2] + "/seeded/results.jsonl") if l.strip()), key=lambda r: r["trial"])
rows = [l for l in text.splitlines() if l.startswith("| ") and l.split(" | ")[0][2:].isdigit()]
seeded = rows[1:]  # diverges' one trial first (file order)
assert [int(l.split(" | ")[0][2:]) for l in seeded] == [r["trial"] for r in rs], seeded
assert rows[0].startswith("| 0 | 1e30 | failed: diverged: "), rows[0]
for r in ("0.3", "0.001"):
    vals = [x["metric"] for x in rs if str(x["params"]["lr"]) == r]
    want = "| lr=%s | 3 of 3 | %.4f | %.4f |" % (r, statistics.mean(vals), statistics.stdev(vals))
    assert want in text, (want, text)
PY
python3 "$rep" "$tmp/c" --device x > report-c.md
grep -q '^| valley | [0-9.e-]* |$' report-c.md || { echo "FAIL: report of the LR range test"; cat report-c.md; exit 1; }
# A setting with one of its three seeds ok does not outrank one with all three (its mean over
# the survivor would be a lucky seed's score): a finished sweep's results, written here.
cat > src/experiments/partial.yaml <<YAML
method: grid
parameters:
  lr: {values: [0.1, 0.2]}
  seed: {values: [0, 1, 2]}
YAML
mkdir -p "$tmp/part/partial"
touch "$tmp/part/partial/done"
results() {  # LR:SEED:STATUS:METRIC ('-': none)...: the finished sweep's results.jsonl, in order
  python3 - "$tmp/part/partial/results.jsonl" "$@" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i, row in enumerate(sys.argv[2:]):
        lr, seed, status, m = row.split(":")
        f.write(json.dumps({"trial": i, "status": status, "metric": None if m == "-" else float(m),
                            "params": {"lr": float(lr), "seed": int(seed)}}) + "\n")
PY
}
results 0.1:0:ok:0.99 0.1:1:failed:- 0.1:2:pruned:0.5 0.2:0:ok:0.91 0.2:1:ok:0.92 0.2:2:ok:0.93
own "$tmp/part" --only partial > /dev/null
grep -q '^| partial | 6 | lr=0.2 | test_acc 0.9200 +- 0.0100 (mean of 3 seeds) |' "$tmp/part/catalogue.md" ||
  { echo "FAIL: a setting with failed seeds ranked first"; cat "$tmp/part/catalogue.md"; exit 1; }
sed -i 's/"status": "ok", "metric": 0.9[123]/"status": "failed", "metric": null/' "$tmp/part/partial/results.jsonl"
own "$tmp/part" --only partial > /dev/null
grep -q '^| partial | 6 | lr=0.1 | test_acc 0.9900 +- 0.0000 (mean of 1 of 3 seeds; the others failed, were pruned or have not run) |' \
  "$tmp/part/catalogue.md" || { echo "FAIL: the seeds a mean leaves out"; cat "$tmp/part/catalogue.md"; exit 1; }
# An unfinished sweep (--budget): a setting with one seed run so far is not complete either.
results 0.1:0:ok:0.91 0.1:1:ok:0.92 0.1:2:ok:0.93 0.2:0:ok:0.99
own "$tmp/part" --only partial > /dev/null
grep -q '^| partial | 4 | lr=0.1 | test_acc 0.9200 +- 0.0100 (mean of 3 seeds) |' "$tmp/part/catalogue.md" ||
  { echo "FAIL: an unfinished setting ranked first"; cat "$tmp/part/catalogue.md"; exit 1; }
# A tie without seeds goes to the lowest trial id, as in the sweep's leaderboard, whatever order
# the records are in (with --workers: the order the trials finished).
printf 'method: grid\nparameters:\n  lr: {values: [0.1, 0.2]}\n' > src/experiments/tied.yaml
mkdir -p "$tmp/part/tied"
touch "$tmp/part/tied/done"
# A line a killed writer tore (the sweep skips it and seals it with a newline) is skipped here
# too, by catalogue.md and by the report.
# The torn line ends inside a UTF-8 character (a traceback in both before 2026-12-05).
printf '%s\n' '{"trial": 1, "status": "ok", "metric": 0.9, "params": {"lr": 0.2}}' "$(printf '{"trial": 2, "message": "caf\303')" \
  '{"trial": 0, "status": "ok", "metric": 0.9, "params": {"lr": 0.1}}' > "$tmp/part/tied/results.jsonl"
own "$tmp/part" --only tied > /dev/null
grep -q '^| tied | 2 | lr=0.1 | test_acc 0.9000 |' "$tmp/part/catalogue.md" ||
  { echo "FAIL: a tie went to the later trial"; cat "$tmp/part/catalogue.md"; exit 1; }
python3 "$KILN_SRC/scripts/catalogue_report.py" "$tmp/part" --src "$tmp/src" > report-tied.md ||
  { echo "FAIL: the report of a torn results.jsonl"; exit 1; }
grep -q '^| 1 | 0.2 | ok | 0.9000 |' report-tied.md || { echo "FAIL: report rows"; cat report-tied.md; exit 1; }
# With seeds, a tie between two settings' means goes to the one whose first trial came first.
printf 'method: grid\nparameters:\n  lr: {values: [0.1, 0.2]}\n  seed: {values: [0, 1]}\n' > src/experiments/tiedseeds.yaml
mkdir -p "$tmp/part/tiedseeds"
touch "$tmp/part/tiedseeds/done"
for t in 3:0.2:1:0.92 2:0.2:0:0.9 0:0.1:0:0.9 1:0.1:1:0.92; do
  IFS=: read -r i lr seed m <<<"$t"
  echo "{\"trial\": $i, \"status\": \"ok\", \"metric\": $m, \"params\": {\"lr\": $lr, \"seed\": $seed}}"
done > "$tmp/part/tiedseeds/results.jsonl"
own "$tmp/part" --only tiedseeds > /dev/null
grep -q '^| tiedseeds | 4 | lr=0.1 | test_acc 0.9100 ' "$tmp/part/catalogue.md" ||
  { echo "FAIL: a tie over seeds went to the later setting"; cat "$tmp/part/catalogue.md"; exit 1; }
# The report's over-seeds table counts a setting's seeds against the file's (2), not against
# the trials recorded so far: lr=0.2 has run 1 of its 2 (it said "1 of 1").
cp src/experiments/tiedseeds.yaml src/experiments/partseeds.yaml
mkdir -p "$tmp/part/partseeds"
grep -v '"trial": 3,' "$tmp/part/tiedseeds/results.jsonl" > "$tmp/part/partseeds/results.jsonl"
python3 "$KILN_SRC/scripts/catalogue_report.py" "$tmp/part" --src "$tmp/src" > report-part.md
grep -q '^| lr=0.2 | 1 of 2 | 0.9000 | - |$' report-part.md && grep -q '^| lr=0.1 | 2 of 2 | 0.9100 |' report-part.md ||
  { echo "FAIL: seeds of an unfinished sweep"; cat report-part.md; exit 1; }
# A sweep file YAML does not read (a tab before a comment, which kiln's sweep reads) with
# comments in its metric block: its metric is the sweep's (val_loss, minimized). The pattern
# took the block's last 'name:' and 'goal:', comments included: catalogue.md gave the worse
# trial as 'test_acc 0.5000' and the report headed the metric column test_acc.
printf 'method: grid\nmetric:\n  name: val_loss  # was name: test_acc\n  goal: minimize  # not goal: maximize\nbase: {val_split: 0.1}\nparameters:\n  lr: {values: [0.1, 0.2]}\t# a tab\n' \
  > src/experiments/commented.yaml
"$KILN_BIN/sweep" src/experiments/commented.yaml --dir dry --dry-run > /dev/null || { echo "FAIL: sweep refuses commented.yaml"; exit 1; }
mkdir -p "$tmp/part/commented"
touch "$tmp/part/commented/done"
printf '%s\n' '{"trial": 0, "status": "ok", "metric": 0.3, "params": {"lr": "0.1"}, "val_loss": 0.3}' \
  '{"trial": 1, "status": "ok", "metric": 0.5, "params": {"lr": "0.2"}, "val_loss": 0.5}' > "$tmp/part/commented/results.jsonl"
own "$tmp/part" --only commented > /dev/null
python3 "$KILN_SRC/scripts/catalogue_report.py" "$tmp/part" --src "$tmp/src" > report-commented.md
grep -q '^| commented | 2 | lr=0.1 | val_loss 0.3000 |' "$tmp/part/catalogue.md" &&
  grep -q '^| trial | lr | status | val_loss | epochs | seconds |$' report-commented.md ||
  { echo "FAIL: the metric of a commented sweep file"; cat "$tmp/part/catalogue.md" report-commented.md; exit 1; }
# Seeds given in block style count as in flow style: lr=0.1 has run 2 of its 3 seeds, lr=0.2 1
# of 3 (the file's seeds were read from flow style only: '2 of 2', and catalogue.md called
# lr=0.1's mean over 2 seeds complete).
printf 'method: grid\nparameters:\n  lr:\n    values: [0.1, 0.2]\n  seed:\n    values:\n      - 0\n      - 1\n      - 2\n' > src/experiments/blockseeds.yaml
"$KILN_BIN/sweep" src/experiments/blockseeds.yaml --dir dry --dry-run > /dev/null || { echo "FAIL: sweep refuses blockseeds.yaml"; exit 1; }
mkdir -p "$tmp/part/blockseeds"
for t in 0:0.1:0:0.9 1:0.1:1:0.92 2:0.2:0:0.85; do
  IFS=: read -r i lr seed m <<<"$t"
  echo "{\"trial\": $i, \"status\": \"ok\", \"metric\": $m, \"params\": {\"lr\": \"$lr\", \"seed\": \"$seed\"}}"
done > "$tmp/part/blockseeds/results.jsonl"
touch "$tmp/part/blockseeds/done"
own "$tmp/part" --only blockseeds > /dev/null
python3 "$KILN_SRC/scripts/catalogue_report.py" "$tmp/part" --src "$tmp/src" > report-block.md
grep -q '^| lr=0.1 | 2 of 3 | 0.9100 | 0.0141 |$' report-block.md && grep -q '^| lr=0.2 | 1 of 3 | 0.8500 | - |$' report-block.md &&
  grep -q '^| blockseeds | 3 | lr=0.1 | test_acc 0.9100 +- 0.0141 (mean of 2 of 3 seeds; ' "$tmp/part/catalogue.md" ||
  { echo "FAIL: seeds in block style"; cat "$tmp/part/catalogue.md" report-block.md; exit 1; }
# --src without experiments/: one line, exit 1
python3 "$KILN_SRC/scripts/catalogue_report.py" "$tmp/part" --src "$tmp/part" > /dev/null 2> err.txt && rc=0 || rc=$?
if [ "$rc" != 1 ] ||
    [ "$(cat err.txt)" != "catalogue_report.py: --src $tmp/part: no experiments/ directory there" ]; then
  echo "FAIL: --src without experiments/"; cat err.txt; exit 1
fi
cat > src/experiments/long.yaml <<YAML
method: grid
base: {model: mlp, width: 8, epochs: 1, train_limit: 300, test_limit: 50, optimizer: sgd, schedule: constant}
parameters:
  lr: {min: 0.01, max: 0.1, distribution: uniform}
  seed: {values: [$(seq -s, 0 199)]}
YAML
sed -i 's/^method: grid/method: random\nrun_cap: 200/' src/experiments/long.yaml
cpu=(--device cpu --data-dir "$KILN_TEST_DATA" --threads 1)
stop() {  # DIR NAME [options]: the catalogue of experiment NAME, sent a SIGTERM once NAME has a
  # result; its exit status in rc, its stderr in err.txt; bin=DIR: the binaries (KILN_BIN)
  local d=$1 name=$2 pid
  shift 2
  # (not through own: $! would be the subshell running it, which the signal would end alone)
  KILN_SRC=$tmp/src KILN_BIN=${bin:-$KILN_BIN} "$cat" "$d" --only "$name" "$@" -- "${cpu[@]}" > /dev/null 2> err.txt &
  pid=$!
  for _ in $(seq 100); do [ -s "$d/$name/results.jsonl" ] && break; sleep 0.1; done
  kill -TERM $pid
  set +e
  wait $pid
  rc=$?
  set -e
  [ $rc -eq 143 ] && grep -q "stopped during $name" err.txt || { echo "FAIL: SIGTERM rc=$rc"; cat err.txt; exit 1; }
}
stop "$tmp/stop" long
sleep 0.5
grep -q 'sweep: interrupted by SIGTERM' "$tmp/stop/long/log.txt" || { echo "FAIL: the sweep did not get the signal"; cat "$tmp/stop/long/log.txt"; exit 1; }
if pgrep -f "$tmp/src/experiments/long.yaml" > /dev/null; then echo "FAIL: the sweep trains on"; exit 1; fi

# --workers 2: each sweep as two `sweep --worker i/2` processes (and two experiments at once):
# every trial recorded once, none lost. In mixed, worker 0's only trial diverges at once: it
# exits 1 (every trial recorded so far failed) while worker 1's trial trains on; the experiment
# has not failed.
once() {  # DIR K: DIR/results.jsonl holds trials 0..K-1, each once
  python3 - "$1/results.jsonl" "$2" <<'PY'
import json, sys
ids = sorted(json.loads(l)["trial"] for l in open(sys.argv[1]) if l.strip())
assert ids == list(range(int(sys.argv[2]))), (sys.argv[1], ids)
PY
}
base='{model: mlp, width: 8, epochs: 5, train_limit: 300, test_limit: 100, optimizer: sgd, schedule: constant}'
printf 'method: grid\nbase: %s\nparameters:\n  lr: {values: [0.3, 0.1, 0.03, 0.01]}\n' "$base" > src/experiments/four.yaml
printf 'method: grid\nbase: %s\nparameters:\n  lr: {values: [1e30, 0.1]}\n' "${base/epochs: 5/epochs: 30}" > src/experiments/mixed.yaml
own "$tmp/par" --only four,mixed --workers 2 -- "${cpu[@]}" > /dev/null 2> err.txt || { echo "FAIL: --workers 2"; cat err.txt; exit 1; }
cat "$tmp/par/catalogue.md"
once "$tmp/par/four" 4 && once "$tmp/par/mixed" 2 || { echo "FAIL: --workers 2 lost or repeated a trial"; exit 1; }
[ -f "$tmp/par/four/done" ] && [ -f "$tmp/par/mixed/done" ] && grep -q 'worker 1/2' "$tmp/par/four/out.1.txt" ||
  { echo "FAIL: --workers 2 outputs"; exit 1; }
grep -q '^| four | 4 | lr=0\.[0-9]* | test_acc 0\.[0-9]* | [0-9.]* |$' "$tmp/par/catalogue.md" &&
  grep -q '^| mixed | 2 | lr=0.1 | test_acc 0\.[0-9]* | [0-9.]* |$' "$tmp/par/catalogue.md" ||
  { echo "FAIL: --workers 2 rows"; exit 1; }
grep -q '^ran 0 trials here; 4 already done' "$tmp/par/four/leaderboard.txt" &&
  grep -q '^leaderboard (test_acc, higher is better; 4 trials)' "$tmp/par/four/leaderboard.txt" ||
  { echo "FAIL: --workers 2 leaderboard"; cat "$tmp/par/four/leaderboard.txt"; exit 1; }
# A SIGTERM reaches both workers, and the script returns only once they have stopped (here a
# sweep that takes a second more to stop); a rerun (first out of budget, then to the end) runs
# the rest, no trial twice.
mkdir slow
ln -s "$KILN_BIN/lr_find" slow/lr_find
cat > slow/sweep <<'SH'
#!/usr/bin/env bash
"$REAL_BIN/sweep" "$@" &
p=$!
trap 'sleep 1' TERM
wait $p
rc=$?
while kill -0 $p 2>/dev/null; do wait $p; rc=$?; done
exit $rc
SH
chmod +x slow/sweep
printf 'method: grid\nbase: %s\nparameters:\n  lr: {values: [0.1, 0.05]}\n  seed: {values: [0, 1, 2, 3]}\n' \
  "${base/width: 8, epochs: 5, train_limit: 300/width: 64, epochs: 80, train_limit: 1000}" > src/experiments/steady.yaml
REAL_BIN=$KILN_BIN bin=$tmp/slow stop "$tmp/stopw" steady --workers 2
if pgrep -f "$tmp/src/experiments/steady.yaml" > /dev/null; then echo "FAIL: a worker runs on"; exit 1; fi
for i in 0 1; do
  grep -q 'sweep: interrupted by SIGTERM' "$tmp/stopw/steady/log.$i.txt" ||
    { echo "FAIL: worker $i did not get the signal"; cat "$tmp/stopw/steady/log.$i.txt"; exit 1; }
done
set +e
own "$tmp/stopw" --only steady --workers 2 --budget 1 -- "${cpu[@]}" > /dev/null
rc=$?
set -e
[ $rc -eq 3 ] && [ ! -f "$tmp/stopw/steady/done" ] || { echo "FAIL: --workers 2 --budget 1 rc=$rc"; exit 1; }
own "$tmp/stopw" --only steady --workers 2 -- "${cpu[@]}" > /dev/null
once "$tmp/stopw/steady" 8 && [ -f "$tmp/stopw/steady/done" ] || { echo "FAIL: the rerun after a SIGTERM"; exit 1; }
# A random sweep draws a setting and seed again (8 draws of 4): the same run twice, counted once
# by its first trial, as `sweep --report` counts it, with the repeats named (the report said
# "4 of 4" with a smaller std, catalogue.md "mean of 4 seeds").
printf 'method: random\nseed: 1\nrun_cap: 8\nbase: %s\nparameters:\n  lr: {values: [0.05, 0.1]}\n  seed: {values: [0, 1]}\n' \
  "${base/epochs: 5, train_limit: 300/epochs: 1, train_limit: 200}" > src/experiments/rseeds.yaml
own "$tmp/rep" --only rseeds -- "${cpu[@]}" > /dev/null
python3 "$KILN_SRC/scripts/catalogue_report.py" "$tmp/rep" --src "$tmp/src" > report-rep.md
"$KILN_BIN/sweep" --report "$tmp/rep/rseeds" > sweep-rep.txt
python3 - report-rep.md sweep-rep.txt "$tmp/rep/catalogue.md" <<'PY' || { echo "FAIL: repeated (setting, seed) trials"; cat report-rep.md sweep-rep.txt; exit 1; }
import re, sys
rep, sw, cat = (open(f).read() for f in sys.argv[1:4])
table = sw.split("\nover seeds (")[1]
want = {m.group(1): (int(m.group(2)), m.group(3), m.group(4))  # lr: n, mean, std
        for m in re.finditer(r"^\d+ +(\S+) +(\d+) +(\S+) +(\S+) ", table, re.M)}
got = {m.group(1): (int(m.group(2)), m.group(4), m.group(5))
       for m in re.finditer(r"^\| lr=(\S+) \| (\d+) of (2) \| (\S+) \| (\S+) \|$", rep, re.M)}
assert len(want) == 2 and got == want, (got, want)
repeats = re.search(r"^\((\d+) trials? repeats? an earlier trial's configuration and seed", table, re.M)
assert repeats and int(repeats.group(1)) > 0, table
assert re.search(r"^\(%s trials repeat an earlier trial's setting and seed, the same run again: counted once, by "
                 r"the first; trials \d+(, \d+)*\)$" % repeats.group(1), rep, re.M), rep
assert re.search(r"^\| rseeds \| 8 \| lr=\S+ \| test_acc \S+ \+- \S+ \(mean of 2 seeds\) \|", cat, re.M), cat
PY
for bad in "--workers 0" "--workers x" "--workers" "--budget x" "--budget 08" "--budget" "--only"; do
  read -r -a args <<<"$bad"
  set +e
  own "$tmp/c" "${args[@]}" > /dev/null 2> err.txt
  rc=$?
  set -e
  [ $rc -eq 2 ] && grep -q "^catalogue.sh: ${args[0]}" err.txt || { echo "FAIL: $bad rc=$rc"; cat err.txt; exit 1; }
done
echo PASS
