#!/usr/bin/env bash
# Kill-and-resume: a run SIGKILLed at random moments and resumed from its last checkpoint
# (every 5 steps, so mostly mid-epoch) ends with tensors bitwise identical to an uninterrupted
# run; SIGTERM/SIGINT stop after a checkpoint with exit 143/130, and that checkpoint resumes to
# the same weights too (a 6-epoch run, so the signal lands well before its end even when the
# machine is loaded). BatchNorm and dropout are on so buffers and the RNG step are covered.
# KILN_DEVICE=cuda runs the same checks on a GPU in --deterministic mode (scripts/gpu_bundle.sh).
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_TEST_DATA:?}"
tm="$KILN_BIN/train_mnist"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
device=${KILN_DEVICE:-cpu}
det=()
[ "$device" = cuda ] && det=(--deterministic)
common=(--device "$device" "${det[@]}" --data-dir "$KILN_TEST_DATA" --model mlp --width 32 --norm batch --dropout 0.1
        --train-limit "${KILN_RESUME_TRAIN_LIMIT:-2000}" --test-limit 200 --batch-size 16 --epochs 3 --checkpoint-every-steps 5 --keep-last 2)

# Tensors (names, dtypes, shapes, bytes) of two safetensors files, and their epoch/step.
cat > same.py <<'EOF'
import json, struct, sys
def load(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    m = h.pop('__metadata__')
    t = {k: (v['dtype'], v['shape'], b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]]) for k, v in h.items()}
    return t, (m['epoch'], m['batch'], m['step'])
(a, pa), (b, pb) = load(sys.argv[1]), load(sys.argv[2])
diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
if diff or pa != pb:
    print('FAIL: %s and %s differ in %s; positions %s vs %s' % (sys.argv[1], sys.argv[2], diff[:5], pa, pb))
    sys.exit(1)
print('identical: %d tensors, epoch/batch/step %s' % (len(a), pa))
EOF

t0=$(date +%s.%N)
"$tm" "${common[@]}" --checkpoint-dir ck_a --save A.safetensors > a.out 2> a.err || { echo "FAIL: the uninterrupted run: $(tail -1 a.err)"; exit 1; }
t1=$(date +%s.%N)
full=$(python3 -c "print(max(0.5, $t1 - $t0))")
echo "uninterrupted run: ${full}s"
[ "$(ls ck_a/ckpt-*.safetensors | wc -l)" -eq 2 ] || { echo "FAIL: --keep-last 2 left $(ls ck_a)"; exit 1; }

last_ckpt() { ls -t "$1"/ckpt-*.safetensors 2>/dev/null | head -1 || true; }
newest_step() { ls "$1" 2>/dev/null | sed -n 's/^ckpt-step-\([0-9]*\)\.safetensors$/\1/p' | sort -n | tail -1 || true; }
# Waits until the run in $1 (pid $2) has checkpointed step >= $3 or has exited.
wait_for_step() {
  while kill -0 "$2" 2>/dev/null; do
    s=$(newest_step "$1")
    [ -n "$s" ] && [ "$s" -ge "$3" ] && return 0
    sleep 0.01
  done
}
steps=$(python3 -c "
import json, struct; b = open('A.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
print(json.loads(b[8:8 + n])['__metadata__']['step'])")
echo "steps in the run: $steps"

resumed_total=0
for trial in 1 2 3; do
  dir=ck_$trial
  rm -f B.safetensors
  for attempt in 1 2 3 4 5 6; do
    last=$(last_ckpt "$dir")
    extra=()
    [ -n "$last" ] && extra=(--resume "$last") && resumed_total=$((resumed_total + 1))
    # A random moment: just after a random future checkpoint, plus a random few milliseconds
    # (so the kill lands mid-step, mid-write or between checkpoints). Chosen before the start
    # so nothing slow sits between the checkpoint appearing and the kill.
    from=$(newest_step "$dir")
    from=${from:-0}
    target=$(( (from / 5 + 1 + RANDOM % 20) * 5 ))
    ms=$(printf '0.%03d' $((RANDOM % 40)))
    "$tm" "${common[@]}" --checkpoint-dir "$dir" "${extra[@]}" --save B.safetensors > b.out 2> b.err &
    pid=$!
    if [ "$attempt" -le 2 ] && [ "$target" -lt $((steps - 40)) ]; then
      wait_for_step "$dir" "$pid" "$target"
      sleep "$ms"
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      echo "trial $trial: SIGKILL ${ms}s after checkpoint step $target; newest checkpoint now $(last_ckpt "$dir")"
    else
      rc=0
      wait "$pid" || rc=$?
      [ "$rc" -eq 0 ] || { echo "FAIL: resumed run exited $rc"; cat b.err; exit 1; }
      grep -h "resumed from" b.err || true
      break
    fi
  done
  python3 same.py A.safetensors B.safetensors
  # The final metrics line matches too (the resumed epoch's metric sums are restored).
  diff <(tail -1 a.out | sed 's/seconds=.*//') <(tail -1 b.out | sed 's/seconds=.*//') ||
    { echo "FAIL: final metrics differ"; exit 1; }
done
[ "$resumed_total" -ge 4 ] || { echo "FAIL: only $resumed_total runs resumed from a checkpoint"; exit 1; }

# SIGTERM and SIGINT: finish the step, checkpoint, exit 143/130 with a message; resume exactly,
# after SIGINT with nothing but --resume (and where the run is): the checkpoint's options.
# A longer run (6 epochs, 750 steps) with its own uninterrupted reference, signalled after
# step 50: on a loaded machine the poll that sees the checkpoint can lag by hundreds of steps,
# and a run that has already finished cannot be interrupted (CI once saw SIGINT "exit 0" that
# way with the 3-epoch run). Should the run still end first, the signal is sent again to a new run.
# (KILN_RESUME_SIGNAL_EPOCHS and KILN_RESUME_TRAIN_LIMIT: the emulated-GPU run in scripts/test.sh,
# slow enough that no poll lags by hundreds of steps, uses 3 epochs of 1200 samples (225 steps)
# and saves five minutes of CI; the kills above still land before step 185.)
long=("${common[@]}" --epochs "${KILN_RESUME_SIGNAL_EPOCHS:-6}" --checkpoint-every-steps 25)
"$tm" "${long[@]}" --checkpoint-dir ck_ref --save R.safetensors > r.out 2> r.err ||
  { echo "FAIL: the uninterrupted reference run: $(tail -1 r.err)"; exit 1; }
for sig in TERM INT; do
  dir=ck_$sig
  want=$([ "$sig" = TERM ] && echo 143 || echo 130)
  for try in 1 2 3; do
    rm -rf "$dir" S.safetensors
    "$tm" "${long[@]}" --checkpoint-dir "$dir" --save S.safetensors > s.out 2> s.err &
    pid=$!
    wait_for_step "$dir" "$pid" 50
    kill -"$sig" "$pid" 2>/dev/null || true
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || break
    echo "SIG$sig arrived after the run had ended (a loaded machine); again ($try)"
  done
  [ "$rc" -eq "$want" ] || { echo "FAIL: SIG$sig gave exit $rc, want $want"; cat s.err; exit 1; }
  grep "interrupted by SIG$sig; checkpoint written to $dir/ckpt-" s.err || { echo "FAIL: no message"; cat s.err; exit 1; }
  cp s.err s.err.sig
  [ ! -e S.safetensors ] || { echo "FAIL: an interrupted run wrote its final --save"; exit 1; }
  ck=$(last_ckpt "$dir")
  if [ "$sig" = TERM ]; then
    "$tm" "${long[@]}" --checkpoint-dir "$dir" --resume "$ck" --save S.safetensors > s.out 2> s.err
  else  # as the message says: the checkpoint gives the recipe, the message the outputs
    said=$(sed -n 's/.*(continue with \(--resume .*\))$/\1/p' s.err.sig)
    [ "$said" = "--resume $ck --data-dir $KILN_TEST_DATA --device $device --save S.safetensors --checkpoint-dir $dir --checkpoint-every-steps 25 --keep-last 2" ] ||
      { echo "FAIL: the message's command: $said"; cat s.err.sig; exit 1; }
    # shellcheck disable=SC2086  # the message's words, as a user pastes them
    "$tm" $said > s.out 2> s.err
    grep -q "note: continuing $ck's run with the options it recorded" s.err ||
      { echo "FAIL: no note on the options taken from the checkpoint"; cat s.err; exit 1; }
  fi
  python3 same.py R.safetensors S.safetensors
  rm -f S.safetensors
done
# --threads is not part of the recipe: a cnn run on three threads, and the same run on one
# thread resumed from its first epoch's checkpoint on two, end with the same bits (the conv, pooling
# and ReLU passes split their images over threads), and the resume says nothing about it.
th=(--device cpu --data-dir "$KILN_TEST_DATA" --model cnn --norm batch --dropout 0.1 --train-limit 256
    --test-limit 64 --batch-size 64 --epochs 2)
"$tm" "${th[@]}" --threads 3 --save T3.safetensors > t3.out 2> t3.err ||
  { echo "FAIL: the 3-thread run"; cat t3.err; exit 1; }
grep -q '^device: cpu, 3 threads' t3.out || { echo "FAIL: device line: $(head -1 t3.out)"; exit 1; }
"$tm" "${th[@]}" --threads 1 --checkpoint-every 1 --checkpoint-dir ck_th > t1.out 2> t1.err ||
  { echo "FAIL: the 1-thread run"; cat t1.err; exit 1; }
"$tm" "${th[@]}" --threads 2 --resume ck_th/ckpt-epoch-1.safetensors --save T2.safetensors > t2.out 2> t2.err ||
  { echo "FAIL: the 2-thread resume"; cat t2.err; exit 1; }
! grep -q 'threads' t2.err || { echo "FAIL: the resume remarks on --threads"; cat t2.err; exit 1; }
python3 same.py T3.safetensors T2.safetensors
# An epoch checkpoint resumed with another batch size: one-cycle keeps the steps already taken
# (4 at batch 32) and anneals over the 2 left at batch 64, said in a note; sized as if every
# epoch had batch 64 (4 steps in all) it ran the rest at its final lr (4e-7), training nothing.
oc=(--device cpu --data-dir "$KILN_TEST_DATA" --model mlp --width 16 --depth 1 --train-limit 128
    --test-limit 64 --no-shuffle --optimizer sgd --momentum 0.9 --lr 0.1 --schedule one-cycle --epochs 2)
"$tm" "${oc[@]}" --batch-size 32 --checkpoint-every 1 --checkpoint-dir ck_oc > oc.out 2> oc.err ||
  { echo "FAIL: the one-cycle run"; cat oc.err; exit 1; }
"$tm" "${oc[@]}" --batch-size 64 --resume ck_oc/ckpt-epoch-1.safetensors --log oc.jsonl --log-every 1 \
  > oc2.out 2> oc2.err || { echo "FAIL: the one-cycle resume"; cat oc2.err; exit 1; }
grep -q "note: the 1 epochs before the checkpoint took 4 steps, not what these batch options give" oc2.err ||
  { echo "FAIL: no note on the kept steps"; cat oc2.err; exit 1; }
python3 - <<'PY' || exit 1
import json
lrs = [r["lr"] for r in map(json.loads, open("oc.jsonl")) if r.get("type") == "step"]
# torch's OneCycleLR(max_lr=0.1, total_steps=6): steps 5 and 6 of the cosine annealing
if len(lrs) != 2 or not (0.01 < lrs[0] < 0.06 and lrs[1] < 1e-5):
    print("FAIL: one-cycle after the resume: lr per step %s" % lrs); raise SystemExit(1)
PY
# ...and a later checkpoint of that continued run resumes it exactly: each checkpoint records
# the steps its past epochs took (epoch 1: 4 at batch 32, then 2 a epoch at 64), so a mid-epoch
# checkpoint (one-cycle) or an epoch checkpoint two epochs on (cyclic, whose half cycle is the
# first epoch's steps) sizes the schedule as the run did; with only the step count they were
# sized as all-64 (one-cycle at step 6: lr 4e-7, not 0.028) or as 6 steps shared evenly.
for sched in one-cycle cyclic; do
  o3=(--device cpu --data-dir "$KILN_TEST_DATA" --model mlp --width 16 --depth 1 --train-limit 128
      --test-limit 64 --no-shuffle --optimizer sgd --momentum 0.9 --lr 0.1 --schedule "$sched")
  rm -rf ck3 ck3b
  "$tm" "${o3[@]}" --epochs 3 --batch-size 32 --checkpoint-every 1 --checkpoint-dir ck3 > /dev/null 2> o3.err ||
    { echo "FAIL: the $sched run"; cat o3.err; exit 1; }
  "$tm" "${o3[@]}" --epochs 3 --batch-size 64 --resume ck3/ckpt-epoch-1.safetensors --checkpoint-dir ck3b \
    --checkpoint-every 1 --checkpoint-every-steps 1 --save W.safetensors > /dev/null 2> o3.err ||
    { echo "FAIL: the $sched run continued at batch 64"; cat o3.err; exit 1; }
  for ck in ck3b/ckpt-step-5.safetensors ck3b/ckpt-epoch-2.safetensors; do
    "$tm" "${o3[@]}" --epochs 3 --batch-size 64 --resume "$ck" --save V.safetensors > /dev/null 2> o3.err ||
      { echo "FAIL: $sched resumed from $ck"; cat o3.err; exit 1; }
    python3 same.py W.safetensors V.safetensors || { echo "FAIL: $sched resumed from $ck"; exit 1; }
  done
done
# Another run's checkpoints in a shared directory: --keep-last deletes only its own run's
# (checkpoints carry a run_id, kept across resumes; a fresh run deleted the other run's
# ckpt-step-5 at its first epoch checkpoint, step 8)...
sh=(--device cpu --data-dir "$KILN_TEST_DATA" --model mlp --width 16 --depth 1 --train-limit 128
    --test-limit 64 --batch-size 16 --epochs 3 --checkpoint-dir ck_shared)
"$tm" "${sh[@]}" --checkpoint-every-steps 5 > /dev/null 2> sh.err || { echo "FAIL: run A"; cat sh.err; exit 1; }
a_files=$(cd ck_shared && ls ckpt-step-*.safetensors | sort)
[ "$(echo "$a_files" | wc -l)" -eq 4 ] || { echo "FAIL: run A's step checkpoints: $a_files"; exit 1; }
"$tm" "${sh[@]}" --checkpoint-every 1 --keep-last 1 --seed 7 > /dev/null 2> sh.err ||
  { echo "FAIL: run B"; cat sh.err; exit 1; }
[ "$(cd ck_shared && ls ckpt-step-*.safetensors | sort)" = "$a_files" ] ||
  { echo "FAIL: run B's --keep-last 1 deleted run A's checkpoints: $(ls ck_shared)"; exit 1; }
# ...and pruning its own still works: B resumed from its epoch-1 checkpoint keeps only its last.
"$tm" "${sh[@]}" --checkpoint-every 1 --keep-last 1 --seed 7 --epochs 4 \
  --resume ck_shared/ckpt-epoch-3.safetensors > /dev/null 2> sh.err || { echo "FAIL: B resumed"; cat sh.err; exit 1; }
[ "$(cd ck_shared && ls ckpt-epoch-*.safetensors)" = "ckpt-epoch-4.safetensors" ] ||
  { echo "FAIL: B's own checkpoints after its resume: $(ls ck_shared)"; exit 1; }
# A run that asked for no checkpoints, stopped by SIGTERM, writes its checkpoint beside another
# run's of the same name (ckpt-*.run-<id>.safetensors), not over it, and resumes from it.
mkdir -p dc && cd dc
mkdir checkpoints
for n in $(seq 1 700); do echo other > "checkpoints/ckpt-step-$n.safetensors"; done
for n in $(seq 1 40); do echo other > "checkpoints/ckpt-epoch-$n.safetensors"; done
python3 - "$tm" --device cpu --data-dir "$KILN_TEST_DATA" --model mlp --width 16 --depth 1 \
  --train-limit 256 --test-limit 64 --batch-size 16 --epochs 40 <<'PY' > rc.txt
import signal, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=open("out.txt", "w"), stderr=open("err.txt", "w"))
while p.poll() is None and "epoch 1" not in open("out.txt").read():  # training, handlers set
    time.sleep(0.01)
p.send_signal(signal.SIGTERM)
print(p.wait())
PY
[ "$(cat rc.txt)" = 143 ] || { echo "FAIL: the signalled run exited $(cat rc.txt)"; cat err.txt; exit 1; }
ck=$(sed -n 's/.*checkpoint written to \([^ ]*\) (continue.*/\1/p' err.txt)
case "$ck" in checkpoints/ckpt-*.run-????????????????.safetensors) ;;
  *) echo "FAIL: the signal checkpoint's name: $ck"; cat err.txt; exit 1 ;; esac
others=$(ls checkpoints | grep -cE '^ckpt-(step|epoch)-[0-9]+[.]safetensors$')
[ "$others" = 740 ] && [ "$(cd checkpoints && grep -LxF other ckpt-step-*[0-9].safetensors ckpt-epoch-*[0-9].safetensors | grep -v run-)" = "" ] ||
  { echo "FAIL: another run's checkpoint replaced ($others left)"; exit 1; }
"$tm" --device cpu --data-dir "$KILN_TEST_DATA" --resume "$ck" > /dev/null 2> err2.txt ||
  { echo "FAIL: resuming $ck"; cat err2.txt; exit 1; }
cd ..
echo "resume: OK"
