#!/usr/bin/env bash
# SIGTERM/SIGINT outside a training loop: a sweep signalled at random moments (mostly while a
# trial loads its data or between trials, where no training loop is watching) always stops
# with its "interrupted" message and exit 143/130, never killed by the default action, and
# --resume finishes the trials; lr_find stops its ramp, writes the curve so far and exits 143.
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_TEST_DATA:?}"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
cd "$tmp"
common=(--device cpu --data-dir "$KILN_TEST_DATA")

# 48 trials that each train 2 steps: nearly all of a trial is loading its data and evaluating.
cat > s.yaml <<YAML
method: grid
metric: {name: test_acc}
base: {model: mlp, width: 8, epochs: 1, train_limit: 64, test_limit: 64, optimizer: sgd, schedule: constant}
parameters:
  lr: {values: [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]}
  seed: {values: [1, 2, 3, 4, 5, 6]}
YAML

# Python sends the signal: a bash background job starts with SIGINT ignored. The delay counts
# from the sweep's first line (its handlers are in place by then; a signal before main() can
# only kill, and a loaded CI machine takes a while to get there).
signal_after() {  # signal delay_s cmd... ; prints the exit code
  python3 - "$@" <<'PY'
import signal, subprocess, sys, time
sig, delay, cmd = getattr(signal, sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
p = subprocess.Popen(cmd, stdout=open("out.txt", "w"), stderr=open("err.txt", "w"))
for _ in range(6000):
    if p.poll() is not None or open("out.txt").read().startswith("sweep "):
        break
    time.sleep(0.005)
time.sleep(delay)
p.send_signal(sig)
rc = p.wait()
print(rc if rc >= 0 else "killed-by-%d" % -rc)
PY
}

stopped=0 stopped_SIGTERM=0 stopped_SIGINT=0
for delay in 0.05 0.1 0.15 0.25; do
  for sig in SIGTERM SIGINT; do
    want=$([ "$sig" = SIGTERM ] && echo 143 || echo 130)
    rm -rf "d_$delay"
    rc=$(signal_after "$sig" "$delay" "$KILN_BIN/sweep" s.yaml --dir "d_$delay" "${common[@]}")
    [ "$rc" = 0 ] && { echo "the sweep ended before the $sig at ${delay}s"; continue; }
    [ "$rc" = "$want" ] && grep -q "^sweep: interrupted by $sig" err.txt ||
      { echo "FAIL: $sig after ${delay}s: exit $rc"; cat err.txt; exit 1; }
    stopped=$((stopped + 1))
    eval "stopped_$sig=\$((stopped_$sig + 1))"
    # --resume finishes the sweep with every trial recorded once.
    "$KILN_BIN/sweep" s.yaml --dir "d_$delay" --resume "${common[@]}" > resumed.txt
    n=$(python3 -c "import json,sys; print(len({json.loads(l)['trial'] for l in open(sys.argv[1]) if l.strip()}))" "d_$delay/results.jsonl")
    lines=$(grep -c . "d_$delay/results.jsonl")
    [ "$n" = 48 ] && [ "$lines" = 48 ] || { echo "FAIL: after --resume $n trials in $lines lines"; exit 1; }
  done
done
[ "$stopped" -ge 4 ] || { echo "FAIL: only $stopped of 8 signals landed before the sweep ended"; exit 1; }
# each kind at least once: a sweep that ignored one of them would finish, and pass as "ended before"
[ "$stopped_SIGTERM" -ge 1 ] && [ "$stopped_SIGINT" -ge 1 ] ||
  { echo "FAIL: SIGTERM stopped $stopped_SIGTERM runs, SIGINT $stopped_SIGINT (each must stop one)"; exit 1; }
echo "sweep: $stopped signals, each stopped with its message"

# lr_find: a long ramp, stopped once it has logged step 20.
"$KILN_BIN/lr_find" "${common[@]}" --model mlp --width 16 --train-limit 2000 --batch-size 16 \
  --num-it 100000 --start-lr 1e-6 --end-lr 1e-5 --lr-find-csv c.csv > lf.out 2> lf.err &
pid=$!
pids+=("$pid")
for _ in $(seq 1 3000); do
  grep -q '^lr_find step 20/' lf.err && break
  sleep 0.02
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 143 ] && grep -q 'interrupted by SIGTERM; the curve so far is in c.csv' lf.err ||
  { echo "FAIL: lr_find after SIGTERM: exit $rc"; cat lf.err; exit 1; }
grep -q '^lr_find: [0-9]* steps\?, stopped: interrupted by SIGTERM' lf.out || { echo "FAIL: report"; cat lf.out; exit 1; }
rows=$(($(wc -l < c.csv) - 1))
[ "$rows" -ge 20 ] || { echo "FAIL: $rows CSV rows"; exit 1; }
echo "lr_find: stopped after $rows steps, curve written"
# A signal once a run has finished (its final line printed, its files written) changes
# nothing: exit 0. The apps used to put the default action back on their way out, so a signal
# in those last milliseconds killed the finished process (exit 143/130, no message) in most
# tries. Sent the moment the final line arrives, several times per app.
cat > s1.yaml <<YAML
method: grid
metric: {name: test_acc}
base: {model: mlp, width: 8, epochs: 1, train_limit: 64, test_limit: 64}
parameters:
  lr: {values: [0.01]}
YAML
after_last_line() {  # pattern signal cmd... ; prints the exit code
  python3 - "$@" <<'PY'
import re, signal, subprocess, sys
pat, sig, cmd = re.compile(sys.argv[1]), getattr(signal, sys.argv[2]), sys.argv[3:]
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open("late.err", "w"), text=True)
sent = False
for line in p.stdout:
    if pat.search(line):
        p.send_signal(sig)
        sent = True
        break
p.stdout.read()
rc = p.wait()
# a final line the pattern no longer matches sends no signal: that is a failure, not a pass
print((rc if rc >= 0 else "killed-by-%d" % -rc) if sent else "no-final-line")
PY
}
for i in 1 2 3 4; do
  sig=$([ $((i % 2)) = 1 ] && echo SIGTERM || echo SIGINT)
  rm -rf late_sweep
  for run in "^test_acc=|train_mnist|$KILN_BIN/train_mnist --model mlp --width 8 --train-limit 200 --test-limit 100 --epochs 1 --save late.safetensors" \
             "^csv: |lr_find|$KILN_BIN/lr_find --model mlp --width 8 --train-limit 200 --num-it 20 --lr-find-csv late.csv" \
             "^1 +0 +ok |sweep|$KILN_BIN/sweep s1.yaml --dir late_sweep"; do
    IFS='|' read -r pat name cmd <<<"$run"
    # shellcheck disable=SC2086
    rc=$(after_last_line "$pat" "$sig" $cmd "${common[@]}")
    [ "$rc" = 0 ] || { echo "FAIL: $name signalled ($sig) after its final line: exit $rc"; cat late.err; exit 1; }
  done
done
echo "a signal after the final line: exit 0 (train_mnist, lr_find, sweep; 4 tries each)"
echo PASS
