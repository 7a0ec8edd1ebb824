#!/usr/bin/env bash
# scripts/plot.py renders each view from real app outputs (lr_find CSV, train_mnist JSONL, a
# grid and a random sweep directory, a grid over seeds) to non-empty PNGs, also with diverged runs
# and failed trials (drawn, not dropped), and answers bad inputs with one-line errors (exit 1; a
# mistyped --metric exit 2) or notes (torn lines, dropped suggestions). Skips when matplotlib is missing.
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_SRC:?}" "${KILN_TEST_DATA:?}"
py=""
for c in python3 /usr/bin/python3; do
  if command -v "$c" >/dev/null && "$c" -c "import matplotlib" 2>/dev/null; then py=$c; break; fi
done
# Without matplotlib (a python3 of pyenv or a venv, where apt's python3-matplotlib is not):
# --help answers, and a plot exits 1 naming that interpreter (--help exited 1 too, saying
# "apt-get install python3-matplotlib", which does not reach such a python3).
nompl() {
  python3 - "$KILN_SRC/scripts/plot.py" "$@" <<'PY'
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("blocked")
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
PY
}
out=$(nompl --help 2>&1) && grep -q '^usage: plot.py' <<<"$out" || { echo "FAIL: --help without matplotlib: $out"; exit 1; }
set +e
out=$(nompl curves none.jsonl -o none.png 2>&1)
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "^plot.py: matplotlib is not installed for /.*python" <<<"$out" ||
  { echo "FAIL: a plot without matplotlib rc=$rc: $out"; exit 1; }
[ -n "$py" ] || { echo "SKIP: matplotlib is not installed (apt-get install python3-matplotlib)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export MPLCONFIGDIR="$tmp/mpl"  # matplotlib's font cache here, not in $HOME
cd "$tmp"
plot="$KILN_SRC/scripts/plot.py"
common=(--device cpu --data-dir "$KILN_TEST_DATA" --train-limit 1000 --model mlp --width 32)
check() { [ -s "$1" ] && [ "$(head -c 4 "$1" | od -An -c | tr -d ' ')" = "211PNG" ] || { echo "FAIL: $1 is not a PNG"; exit 1; }; }

"$KILN_BIN/lr_find" "${common[@]}" --num-it 60 --lr-find-csv lr.csv > /dev/null 2>&1
"$py" "$plot" lr-find lr.csv -o lr.png
check lr.png
# Several range tests (another seed) overlaid, each valley marked.
"$KILN_BIN/lr_find" "${common[@]}" --num-it 60 --seed 1 --lr-find-csv lr1.csv > /dev/null 2>&1
"$py" "$plot" lr-find lr.csv lr1.csv -o lr_seeds.png
check lr_seeds.png
# A held-out range test (--lr-find-val): its CSV names the loss, and so does the plot's axis.
"$KILN_BIN/lr_find" "${common[@]}" --num-it 30 --val-split 0.2 --lr-find-val --lr-find-csv lrv.csv > /dev/null 2>&1
"$py" "$plot" lr-find lrv.csv -o lrv.png
check lrv.png

"$KILN_BIN/train_mnist" "${common[@]}" --epochs 2 --log a.jsonl > /dev/null 2>&1
"$KILN_BIN/train_mnist" "${common[@]}" --epochs 2 --optimizer sgd --lr 0.1 --log b.jsonl > /dev/null 2>&1
"$py" "$plot" curves a.jsonl b.jsonl -o curves.png
check curves.png
# With an L1 run among them, a fourth panel (weight sparsity) makes the figure wider.
"$KILN_BIN/train_mnist" "${common[@]}" --epochs 2 --l1 0.001 --log c.jsonl > /dev/null 2>&1
"$py" "$plot" curves a.jsonl c.jsonl -o sparsity.png
check sparsity.png
width() { "$py" -c "import struct,sys; print(struct.unpack('>I', open(sys.argv[1],'rb').read()[16:20])[0])" "$1"; }
[ "$(width sparsity.png)" -gt "$(width curves.png)" ] || { echo "FAIL: no sparsity panel"; exit 1; }

printf 'method: grid\nbase: {epochs: 1, optimizer: sgd, schedule: constant}\nparameters:\n  lr: {values: [0.003, 0.03, 0.3]}\n  batch_size: {values: [32, 128]}\n' > g.yaml
printf 'method: random\nrun_cap: 6\nbase: {epochs: 1, optimizer: sgd, schedule: constant}\nparameters:\n  lr: {min: 0.001, max: 1, distribution: log_uniform}\n  batch_size: {values: [32, 128]}\n' > r.yaml
"$KILN_BIN/sweep" g.yaml --dir grid "${common[@]}" > /dev/null
"$KILN_BIN/sweep" r.yaml --dir random "${common[@]}" > /dev/null
"$py" "$plot" sweep grid random -o sweep.png
check sweep.png
printf 'method: grid\nbase: {epochs: 1, optimizer: sgd, schedule: constant}\nparameters:\n  lr: {values: [0.003, 0.3]}\n  seed: {values: [0, 1]}\n' > s.yaml
"$KILN_BIN/sweep" s.yaml --dir seeds "${common[@]}" > /dev/null
"$py" "$plot" seeds seeds -o seeds.png
check seeds.png
# A file kiln's sweep reads that YAML does not (a tab before a comment, and inside the metric's
# braces), its copy cut mid-write, and a metric given by its name alone: plotted, the metric read
# by pattern (a ScannerError, ParserError or AttributeError traceback before).
printf 'method: grid\nmetric: {name: test_acc,\tgoal: maximize}\nbase: {epochs: 1, optimizer: sgd, schedule: constant}\nparameters:\n  lr: {values: [0.003, 0.3]}\t# a comment\n  seed: {values: [0, 1]}\n' > t.yaml
"$KILN_BIN/sweep" t.yaml --dir seedstab "${common[@]}" > /dev/null
for spec in '' 'method: grid\nparameters:\n  lr: {values: [0.003,' 'method: grid\nmetric: test_acc\nparameters:\n  lr: {values: [0.003, 0.3]}\n'; do
  rm -rf seedsy
  cp -r seedstab seedsy
  [ -z "$spec" ] || printf "$spec" > seedsy/sweep.yaml  # ('': the sweep's own copy, tabs and all)
  for cmd in seeds sweep; do
    "$py" "$plot" $cmd seedsy -o yaml.png 2> err.txt || { echo "FAIL: $cmd of a sweep.yaml YAML does not read: $spec"; cat err.txt; exit 1; }
    check yaml.png
    rm yaml.png
  done
done
# A random sweep's repeated draw of a configuration and seed (here trial 0 again, as trial 4)
# is the same run: counted once, as the sweep's own over-seeds table counts it.
cp -r seeds seedsdup
"$py" -c "import json,sys; r=json.loads(open(sys.argv[1]).readline()); r['trial']=4; open(sys.argv[1],'a').write(json.dumps(r)+'\n')" seedsdup/results.jsonl
"$py" "$plot" seeds seedsdup -o seedsdup.png 2> err.txt
check seedsdup.png
grep -q "seeds: 1 trial(s) repeat an earlier trial's configuration and seed" err.txt || { echo "FAIL: a repeated draw was not counted once"; cat err.txt; exit 1; }
# A sweep trial's curve is labelled with its parameters (from results.csv), and the lr panel
# follows the step records where the run logged them: a one-cycle run's 16 steps in 2 epochs.
"$KILN_BIN/train_mnist" "${common[@]}" --train-limit 256 --epochs 2 --log-every 1 --log oc.jsonl > /dev/null 2>&1
"$py" - "$KILN_SRC/scripts" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import plot
assert plot.trial_label("grid/trials/trial-1.jsonl") == "trial-1 (lr=0.003 batch-size=128)", plot.trial_label("grid/trials/trial-1.jsonl")
assert plot.trial_label("oc.jsonl") == "oc"
# An older kiln's results.csv, with fewer fixed columns: the parameters are found by name.
import csv, os, shutil
shutil.copytree("grid", "oldgrid")
rows = list(csv.reader(open("grid/results.csv", newline="")))
keep = [i for i, c in enumerate(rows[0]) if c not in ("train_acc", "train_loss", "weight_sparsity")]
with open("oldgrid/results.csv", "w", newline="") as f:
    csv.writer(f).writerows([[r[i] for i in keep] for r in rows])
assert plot.trial_label("oldgrid/trials/trial-1.jsonl") == "trial-1 (lr=0.003 batch-size=128)", plot.trial_label("oldgrid/trials/trial-1.jsonl")
# ... and older still: the epochs run were in a column named "epochs".
with open("oldgrid/results.csv", "w", newline="") as f:
    csv.writer(f).writerows([["epochs" if c == "epochs_run" else c for c in rows[0]]] + rows[1:])
assert plot.trial_info("oldgrid/trials/trial-1.jsonl")[1:] == ([("lr", "0.003"), ("batch-size", "128")], "ok", "1"), plot.trial_info("oldgrid/trials/trial-1.jsonl")
recs = [r for r in plot.read_jsonl("oc.jsonl") if r.get("type") == "epoch"]
x, lr = plot.step_lr("oc.jsonl", recs)
assert len(x) == 16 and abs(x[7] - 1.0) < 1e-9 and abs(x[-1] - 2.0) < 1e-9, x
assert max(lr) > 10 * min(lr), lr  # the cycle, not two epoch-end points
PY
"$py" "$plot" curves grid/trials/trial-0.jsonl oc.jsonl -o steps.png
check steps.png
set +e
"$py" "$plot" seeds grid -o x.png 2> err.txt  # no seed parameter
rc=$?
set -e
[ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] && grep -q "^plot.py: seeds: grid has no 'seed' parameter" err.txt ||
  { echo "FAIL: seeds without a seed rc=$rc"; cat err.txt; exit 1; }
# Directories that swept different parameters: the shared one (lr) is plotted, the rest named.
"$py" "$plot" sweep seeds random -o mixed.png > out.txt 2> err.txt
check mixed.png
# (a note: on stderr with the others, not on stdout)
grep -q "^plot.py: sweep: not in every directory, left out: batch-size, seed" err.txt &&
  ! grep -q "left out" out.txt || { echo "FAIL: mixed sweeps"; cat out.txt err.txt; exit 1; }

set +e
"$py" "$plot" lr-find missing.csv -o x.png 2> err.txt
rc=$?
set -e
[ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] && grep -q "^plot.py: lr-find: .*missing.csv" err.txt ||
  { echo "FAIL: missing input rc=$rc"; cat err.txt; exit 1; }

# The PNG is written beside its name and renamed over it: a failed write (the rename fails,
# EIO) leaves the previous PNG as it was and no temp file, and names the file.
if strace -qq -o /dev/null true 2>/dev/null; then
  cp lr.png lr.before
  set +e
  strace -f -qq -o /dev/null -e trace=rename,renameat,renameat2 -e inject=rename,renameat,renameat2:error=EIO \
    "$py" "$plot" lr-find lr.csv --title other -o lr.png > /dev/null 2> err.txt
  rc=$?
  set -e
  [ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] && grep -q "^plot.py: lr-find: .*Input/output error: 'lr.png'" err.txt &&
    cmp -s lr.png lr.before && [ -z "$(ls -A | grep '[.]tmp[.]' || true)" ] ||
    { echo "FAIL: a failed PNG write rc=$rc"; cat err.txt; ls -A; exit 1; }
else
  echo "skip: the failed-write check (strace cannot trace here)"
fi
# A name without a suffix gets matplotlib's .png, and the line says so; a link is written through.
"$py" "$plot" lr-find lr.csv -o nosuffix > out.txt
check nosuffix.png
grep -qx "wrote nosuffix.png" out.txt || { echo "FAIL: -o nosuffix"; cat out.txt; exit 1; }
ln -s linked-target link.png  # (the format is the name's: PNG, whatever the target's name)
"$py" "$plot" lr-find lr.csv -o link.png > /dev/null
[ -L link.png ] && check linked-target || { echo "FAIL: -o link.png"; ls -l link.png; exit 1; }
ln -s loop.png loop.png
set +e
"$py" "$plot" lr-find lr.csv -o loop.png > /dev/null 2> err.txt
rc=$?
set -e
[ $rc -eq 1 ] && [ -L loop.png ] && grep -q "^plot.py: lr-find: .*Too many levels of symbolic links: 'loop.png'" err.txt ||
  { echo "FAIL: -o at a loop of links rc=$rc"; cat err.txt; exit 1; }
# A CSV whose last row was cut (a copy taken mid-write) plots the rows before it.
head -c 1500 lr.csv > torn.csv
"$py" "$plot" lr-find torn.csv -o torn.png 2> err.txt || { echo "FAIL: torn CSV"; cat err.txt; exit 1; }
check torn.png
grep -q "is incomplete; plotting the" err.txt || { echo "FAIL: no note on the torn row"; cat err.txt; exit 1; }

# The titles' "explained" values are the sweep's own importance table (same bins, ties kept
# together), and seeds ranks a loss metric lowest first when the file gives no goal.
"$KILN_BIN/sweep" --importance random > imp.txt
"$py" - "$plot" random imp.txt <<'PY' || { echo "FAIL: plot.py's importance differs from the sweep's"; cat imp.txt; exit 1; }
import importlib.util, json, math, sys
spec = importlib.util.spec_from_file_location("plot", sys.argv[1])
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)
recs = [json.loads(l) for l in open(sys.argv[2] + "/results.jsonl") if l.strip()]
ok = [r for r in recs if r["status"] == "ok" and r.get("metric") is not None]
ys = [float(r["metric"]) for r in ok]
table = {l.split()[0]: l.split()[1] for l in open(sys.argv[3]) if l.split() and l.split()[0] in ok[0]["params"]}
for p, want in table.items():
    vals = [r["params"][p] for r in ok]
    fv = [plot.as_float(v) for v in vals]
    numeric = all(v is not None for v in fv)
    e = plot.explained(fv if numeric else vals, ys, numeric)
    got = "%.3f" % e if math.isfinite(e) else "-"
    print(p, "plot", got, "sweep", want)
    assert got == want, p
# Equal scores explain nothing (the table's '-'), whatever their mean rounds to, and no share
# passes 1: nine trials at 0.098 (a model stuck on class 0) read 4.000 before.
assert math.isnan(plot.explained([1, 2, 3, 4, 5, 6, 7, 8, 9], [0.098] * 9, True))
assert math.isnan(plot.explained(["a", "b", "c"] * 10, [0.1] * 30, False))
assert plot.explained([1, 2], [0.1, 0.3], True) <= 1.0
assert plot.sweep_goal("metric: {name: test_loss}\n") == ("test_loss", False)
assert plot.sweep_goal("metric: {name: test_loss, goal: maximize}\n") == ("test_loss", True)
assert plot.sweep_goal("method: grid\n") == ("test_acc", True)
assert plot.sweep_goal("metric: {name: test_acc}\n", "val_loss") == ("val_loss", False)
assert plot.sweep_goal("metric:\n  name: test_loss\nmethod: grid\n") == ("test_loss", False)  # block style
# What YAML does not read (a tab before a comment: kiln's sweep reads it; a copy cut mid-write),
# a metric named alone, a document that is no mapping: the patterns' reading, defaults otherwise.
assert plot.sweep_goal("metric: {name: test_loss}\nparameters:\n  lr: {values: [0.05]}\t# a comment\n") == ("test_loss", False)
assert plot.sweep_goal("metric: {name: test_loss,\tgoal: maximize}\n") == ("test_loss", True)
assert plot.sweep_goal("metric: {name: val_loss, goal: maximize}\nparameters:\n  lr: {values: [0.05,\n") == ("val_loss", True)
assert plot.sweep_goal("metric:\n  name: val_acc\n  goal: minimize\nparameters:\n  lr: {values: [1,\n") == ("val_acc", False)
assert plot.sweep_goal("method: grid\nmetric: test_loss\n") == ("test_loss", False)
# ... with comments and blank lines in the block, and a flow mapping over two lines (a tab
# elsewhere keeps YAML from reading each; the pattern took a comment's name, and ended the
# block at a blank line, until the session's review)
assert plot.sweep_goal("metric:\n  name: val_acc   # not name: test_loss\n  goal: maximize\nbase: {a: 1}\t# c\n") == ("val_acc", True)
assert plot.sweep_goal("metric:\n  name: val_loss\n\n  goal: maximize\nbase: {a: 1}\t# c\n") == ("val_loss", True)
assert plot.sweep_goal("metric: {goal: minimize,\n name: val_acc}\nbase: {a: 1}\t# c\n") == ("val_acc", False)
assert plot.sweep_goal("method: grid\nparameters:\n  lr: {values: [0.05,\n") == ("test_acc", True)
assert plot.sweep_goal("- a\n- b\n") == ("test_acc", True)
PY

# A run that diverged in epoch 1 (exit 3) ends its log with a 'diverged' record: plotted (its step
# losses with --log-every, else an x), not dropped; with the torn line of a killed run, a note.
set +e
"$KILN_BIN/train_mnist" "${common[@]}" --epochs 2 --optimizer sgd --lr 1000 --schedule constant --log-every 1 --log d1.jsonl > /dev/null 2>&1
rc1=$?
"$KILN_BIN/train_mnist" "${common[@]}" --epochs 2 --optimizer sgd --lr 1000 --schedule constant --log d0.jsonl > /dev/null 2>&1
rc0=$?
set -e
[ $rc1 -eq 3 ] && [ $rc0 -eq 3 ] || { echo "FAIL: the lr 1000 runs did not diverge ($rc1 $rc0)"; exit 1; }
cp a.jsonl torn.jsonl
printf '{"type":"epoch","epoch":3,"train_lo' >> torn.jsonl
"$py" "$plot" curves torn.jsonl b.jsonl d1.jsonl d0.jsonl -o div.png 2> err.txt || { echo "FAIL: curves with diverged runs"; cat err.txt; exit 1; }
check div.png
grep -q "torn.jsonl: 1 unreadable line" err.txt || { echo "FAIL: no note on the torn JSONL line"; cat err.txt; exit 1; }
! grep -q "no epoch records\|no records" err.txt || { echo "FAIL: a diverged run was dropped"; cat err.txt; exit 1; }
# A torn line cut inside a UTF-8 character is skipped the same way (the whole file was refused).
cp a.jsonl tornu.jsonl
printf '{"type":"note","message":"caf\303' >> tornu.jsonl
"$py" "$plot" curves tornu.jsonl -o tornu.png 2> err.txt || { echo "FAIL: curves with a torn UTF-8 line"; cat err.txt; exit 1; }
check tornu.png
grep -q "tornu.jsonl: 1 unreadable line" err.txt || { echo "FAIL: no note on the torn UTF-8 line"; cat err.txt; exit 1; }
# An epoch that is not an integer: one line naming the file and the field (a traceback before).
sed 's/"epoch":1,/"epoch":"1",/' a.jsonl > strepoch.jsonl
grep -q '"epoch":"1"' strepoch.jsonl || { echo "FAIL: the test's sed found no epoch 1"; exit 1; }
set +e
"$py" "$plot" curves strepoch.jsonl -o x.png 2> err.txt
rc=$?
set -e
[ $rc -eq 1 ] && [ "$(cat err.txt)" = 'plot.py: curves: strepoch.jsonl: epoch "1" is not an integer' ] ||
  { echo "FAIL: curves with a string epoch rc=$rc"; cat err.txt; exit 1; }
# On its own, a run that diverged in epoch 1 without --log-every has no loss to draw, only its x:
# a linear axis, not a log one with no positive data (tight_layout raised; no PNG until 2026-12-05).
"$py" "$plot" curves d0.jsonl -o d0.png 2> err.txt || { echo "FAIL: curves of a run with no loss to draw"; cat err.txt; exit 1; }
check d0.png
# An empty or foreign file is an error naming it (exit 1), not blank axes.
: > empty.jsonl
echo "not json" > junk.jsonl
for f in empty.jsonl junk.jsonl; do
  set +e
  "$py" "$plot" curves "$f" -o x.png 2> err.txt
  rc=$?
  set -e
  [ $rc -eq 1 ] && [ "$(grep -c "curves: $f: no records" err.txt)" -eq 1 ] && [ ! -e x.png ] ||
    { echo "FAIL: curves $f rc=$rc"; cat err.txt; exit 1; }
done

# A sweep whose trials diverge (lr 1000: failed) and a grid over seeds with an all-failed
# configuration: both plot (failed trials drawn, counted); a mistyped --metric is exit 2 with one
# line listing the valid fields.
printf 'method: grid\nbase: {epochs: 1, optimizer: sgd, schedule: constant}\nparameters:\n  lr: {values: [0.03, 1000]}\n  seed: {values: [0, 1]}\n' > f.yaml
"$KILN_BIN/sweep" f.yaml --dir failing "${common[@]}" > /dev/null 2>&1 || true
[ "$(grep -c '"status":"failed"' failing/results.jsonl)" -eq 2 ] || { echo "FAIL: no failed trials"; cat failing/results.jsonl; exit 1; }
"$py" "$plot" sweep failing -o failing_sweep.png 2> err.txt
check failing_sweep.png
grep -q "seed is not a hyperparameter" err.txt || { echo "FAIL: seed treated as a hyperparameter"; cat err.txt; exit 1; }
"$py" "$plot" seeds failing -o failing_seeds.png
check failing_seeds.png
"$py" "$plot" curves failing/trials/trial-*.jsonl -o failing_curves.png
check failing_curves.png
for cmd in "seeds failing" "sweep failing grid"; do
  set +e
  "$py" "$plot" $cmd --metric test_ac -o x.png 2> err.txt
  rc=$?
  set -e
  # (one line besides the note on what grid and failing do not share)
  [ $rc -eq 2 ] && [ "$(grep -vc 'not in every directory, left out' err.txt)" -eq 1 ] &&
    grep -q "test_ac: not a results field (valid: metric, test_acc" err.txt ||
    { echo "FAIL: $cmd --metric test_ac rc=$rc"; cat err.txt; exit 1; }
done

# Directories ranked by different metrics (val_acc and test_acc): plotted by the first's, which
# the second never records: exit 2 naming it (its good trials were drawn as failed before).
printf 'method: grid\nmetric: {name: val_acc}\nbase: {epochs: 1, val_split: 0.2, optimizer: sgd, schedule: constant}\nparameters:\n  lr: {values: [0.003, 0.03]}\n' > v.yaml
"$KILN_BIN/sweep" v.yaml --dir valdir "${common[@]}" > /dev/null 2>&1
for cmd in "sweep valdir grid" "sweep grid valdir --metric val_acc"; do
  set +e
  "$py" "$plot" $cmd -o x.png 2> err.txt
  rc=$?
  set -e
  [ $rc -eq 2 ] && [ ! -e x.png ] && grep -q "^plot.py: sweep: grid: no finished trial records val_acc (it ranks by test_acc)" err.txt ||
    { echo "FAIL: $cmd rc=$rc"; cat err.txt; exit 1; }
done

# A CSV cut before the rows its suggestions point at: said, not silently dropped.
head -n 6 lr.csv > short.csv
cp lr.csv.suggestions short.csv.suggestions
"$py" "$plot" lr-find short.csv -o short.png 2> err.txt
check short.png
grep -q "short.csv: suggestion .* is past the CSV's last row (step 4): not drawn" err.txt ||
  { echo "FAIL: no note on dropped suggestions"; cat err.txt short.csv.suggestions; exit 1; }

"$py" - "$KILN_SRC/scripts" <<'PY' || { echo "FAIL: plot.py helpers"; exit 1; }
import math, sys
sys.path.insert(0, sys.argv[1])
import plot
# The diverged record is read; a failed trial's label says so, values as %.3g.
run = plot.load_run("d0.jsonl")
assert not run["epochs"] and run["diverged"]["epoch"] == 1, run
assert plot.load_run("d1.jsonl")["steps"], "no step records"
# a resume that got past the epoch it diverged in (its log appends on): no longer diverged
with open("resumed.jsonl", "w") as f:
    for r in ['{"type":"epoch","epoch":1,"step":5,"train_loss":1.0,"test_loss":1.1,"test_acc":0.5}',
              '{"type":"diverged","epoch":2,"step":7,"message":"training diverged"}',
              '{"type":"diverged","epoch":2,"step":7,"message":"training diverged"}',
              '{"type":"epoch","epoch":2,"step":10,"train_loss":0.9,"test_loss":1.0,"test_acc":0.6}']:
        f.write(r + "\n")
assert plot.load_run("resumed.jsonl")["diverged"] is None, "a resumed run past its divergence is marked diverged"
with open("resumed.jsonl", "a") as f:
    f.write('{"type":"diverged","epoch":3,"step":12,"message":"training diverged"}\n')
assert plot.load_run("resumed.jsonl")["diverged"]["epoch"] == 3
# --restore-best: the result is the restored epoch's, starred on the test curves and named in
# the label (the curve alone ended at the last epoch's score until 2026-12-04); a resume that
# trained on after it drops it.
with open("rb.jsonl", "w") as f:
    for e, acc in ((1, 0.875), (2, 0.86), (3, 0.905)):
        f.write('{"type":"epoch","epoch":%d,"step":%d,"lr":0.1,"train_loss":0.5,"test_loss":%g,"test_acc":%g}\n'
                % (e, 4 * e, 1 - acc, acc))
    f.write('{"type":"restore_best","epoch":1,"best":0.4,"test_loss":0.125,"test_acc":0.875}\n')
run = plot.load_run("rb.jsonl")
assert run["restored"]["epoch"] == 1, run["restored"]
import matplotlib.pyplot as plt
fig, axes = plt.subplots(1, 3)
kinds = set()
suffix = plot.draw_run(axes, run, dict(color="C0", marker="o", ms=3), None, None, False, kinds, [])
assert suffix == " (restored epoch 1: test_acc 0.875)", suffix
stars = [l.get_xydata().tolist() for l in axes[1].get_lines() if l.get_marker() == "*"]
assert stars == [[[1.0, 0.875]]], stars
assert any(h.get_label().startswith("star: --restore-best") for h in plot.style_handles(kinds, None))
with open("rb.jsonl", "a") as f:
    f.write('{"type":"epoch","epoch":4,"step":16,"lr":0.1,"train_loss":0.4,"test_loss":0.09,"test_acc":0.91}\n')
assert plot.load_run("rb.jsonl")["restored"] is None
failed = [l for l in open("failing/results.csv") if ",failed," in l][0].split(",")[0]
assert plot.trial_label(f"failing/trials/trial-{failed}.jsonl").endswith(" failed"), plot.trial_label(f"failing/trials/trial-{failed}.jsonl")
assert plot.fmt("0.00232555") == "0.00233" and plot.fmt("128") == "128" and plot.fmt("relu") == "relu"
# lr-find: the minimum is drawn at its suggested lr (lr/10 of the lowest loss, on the curve), and
# the y range is the same in any argument order and reaches the lowest raw loss.
lr, raw, smooth = plot.read_curve("lr.csv")
_, lr1, sm1 = plot.read_curve("lr1.csv")
for s, step, at in plot.suggestions("lr.csv", lr):
    if s["method"] == "minimum":
        assert abs(at - lr[step] / 10) < 1e-6 * lr[step], (at, lr[step])
        assert lr[0] <= at and math.isfinite(plot.loss_at(lr, smooth, at))
assert plot.lr_ylim([smooth, sm1]) == plot.lr_ylim([sm1, smooth])
assert plot.seeds_tick("lr", "0.1") == "lr=0.1"
assert plot.seeds_tick("clip", "clipvalue=0.01 clipnorm=0") == "clip=\nclipvalue=0.01\nclipnorm=0"
assert plot.curve_loss("lr.csv") == ("loss", "training loss")
assert plot.curve_loss("lrv.csv") == ("val_loss", "validation loss"), plot.curve_loss("lrv.csv")
lrv, rawv, smv = plot.read_curve("lrv.csv")
assert len(lrv) == 30 and all(math.isfinite(v) for v in smv), (len(lrv), smv[:3])
assert plot.lr_ylim([raw, smooth])[0] <= min(v for v in raw if math.isfinite(v))
# curves: a loss of 1e15 between healthy ones does not stretch the axis; healthy curves are not cut.
ok = {"epochs": [{"epoch": e, "train_loss": 2.3 / e, "test_loss": 2.0 / e} for e in (1, 2, 3)]}
blown = {"epochs": [{"epoch": 1, "train_loss": 8e5, "test_loss": 1e8}, {"epoch": 2, "train_loss": 1e15, "test_loss": 10},
                    {"epoch": 3, "train_loss": 2.3, "test_loss": 10}]}
cap = plot.loss_cap([ok, blown])
assert cap is not None and 10 < cap < 1000, cap
assert plot.loss_cap([ok]) is None
long = {"epochs": [{"epoch": e, "train_loss": 2.3 * 0.8 ** e, "test_loss": 2.3 * 0.8 ** e} for e in range(1, 60)]}
assert plot.loss_cap([long]) is None
# sweep: the axis follows the parameter's distribution; seed has no importance.
d = plot.param_distributions("parameters:\n  lr: {min: 0.001, max: 1, distribution: log_uniform}\n"
                             "  momentum: {min: 0.5, max: 0.99}\n  batch_size: {values: [32, 128]}\n")
assert plot.log_axis("lr", [d], [0.01, 0.02]) and not plot.log_axis("momentum", [d], [0.001, 0.9])
assert not plot.log_axis("batch-size", [d], [32, 128]) and plot.log_axis("batch-size", [d], [1, 1000])
assert plot.importance_title("seed", []).startswith("seed (not a hyperparameter")
# Few trials: the chance share is what noise would explain (2 trials, 2 bins: all of it).
assert plot.chance([0.1, 0.2], True) == 1.0
# Runs in their own directories under one file name: each label says whose (both read "log").
import os
for d in ("ra", "rb", "x/ra"):
    os.makedirs(d, exist_ok=True)
    with open(d + "/log.jsonl", "w") as f:
        f.write('{"type":"epoch","epoch":1,"step":5,"train_loss":1.0,"test_loss":1.1,"test_acc":0.5}\n')
runs = [plot.load_run(p) for p in ("ra/log.jsonl", "rb/log.jsonl", "x/ra/log.jsonl", "rb.jsonl")]
plot.distinct_labels(runs)
labels = [r["label"] for r in runs]
assert labels[1] == "rb/log" and labels[3] == "rb" and len(set(labels)) == 4, labels
assert labels[0].endswith("/ra/log") and labels[2] == "x/ra/log", labels
# A field of the wrong type names the file and the field (a bare ValueError named neither).
with open("strloss.jsonl", "w") as f:
    f.write('{"epoch": 1, "train_loss": "abc"}\n')
try:
    plot.load_run("strloss.jsonl")
    raise AssertionError("a string loss was read")
except ValueError as e:
    assert str(e) == 'strloss.jsonl: train_loss "abc" is not a number', e
PY
# The lr-find plot draws the default suggestion (valley) over any other at the same lr.
"$py" - "$KILN_SRC/scripts" <<'PY' || { echo "FAIL: valley under another suggestion"; exit 1; }
import sys
sys.path.insert(0, sys.argv[1])
import plot
import matplotlib.pyplot as plt
saved = []
plot.save = lambda fig, args: saved.append(fig)
class A:  # the lr-find subcommand's arguments
    csv, title, out = ["lr.csv"], None, "unused.png"
plot.lr_find(A())
lines = saved[0].axes[0].get_lines()
z = {l.get_label().split(":")[0]: l.get_zorder() for l in lines if ":" in l.get_label()}
assert z["valley"] > max(v for k, v in z.items() if k != "valley"), z
PY
# A run at lr 0 (--lr 0) beside one at lr > 0: a triangle at the log lr panel's bottom edge in its
# colour, named in the legend (it vanished: a log axis has no 0); positive lrs alone get none.
"$KILN_BIN/train_mnist" "${common[@]}" --epochs 2 --optimizer sgd --schedule constant --lr 0 --log z.jsonl > /dev/null 2>&1
"$py" - "$KILN_SRC/scripts" <<'PY' || { echo "FAIL: lr 0 on the log lr panel"; exit 1; }
import sys, types
sys.path.insert(0, sys.argv[1])
import plot
figs = []
plot.save = lambda fig, args: figs.append(fig)
for files in (["b.jsonl", "z.jsonl"], ["a.jsonl", "b.jsonl"]):
    plot.curves(types.SimpleNamespace(jsonl=files, title=None, output="x.png"))
ax = figs[0].axes[2]
z = [l for l in ax.get_lines() if l.get_marker() == "v"]
assert ax.get_yscale() == "log" and len(z) == 1, (ax.get_yscale(), z)
assert list(z[0].get_xdata()) == [1, 2] and z[0].get_color() == "C1", (z[0].get_xydata(), z[0].get_color())
legend = [t.get_text() for t in figs[0].legends[0].get_texts()]
assert "triangle at the lr panel's bottom: lr 0 (off the log scale)" in legend, legend
assert not [l for l in figs[1].axes[2].get_lines() if l.get_marker() == "v"], "a triangle without an lr 0"
assert not any("lr 0" in t.get_text() for t in figs[1].legends[0].get_texts())
PY
# Inputs under one name in different directories are told apart, as curves' runs are, and one file
# given twice is numbered: lr-find's CSVs (two 'lr (valley ...)' before) and sweep's directories
# (two 'grid' in the titles and the legend).
mkdir -p mn fa A B
cp lr.csv lr.csv.suggestions mn/
cp lr1.csv fa/lr.csv
cp lr1.csv.suggestions fa/lr.csv.suggestions
cp -r grid A/grid
cp -r grid B/grid
"$py" - "$KILN_SRC/scripts" <<'PY' || { echo "FAIL: labels of inputs under one name"; exit 1; }
import sys, types
sys.path.insert(0, sys.argv[1])
import plot
figs = [None, None]
plot.save = lambda fig, args: figs.append(fig)
plot.lr_find(types.SimpleNamespace(csv=["mn/lr.csv", "fa/lr.csv", "mn/lr.csv"], title=None, output="x.png"))
labels = [l.get_label() for l in figs[2].axes[0].get_lines() if not l.get_label().startswith("_")][:3]
assert [l.split(" (valley")[0] for l in labels] == ["mn/lr (1)", "fa/lr", "mn/lr (2)"], labels
plot.sweep(types.SimpleNamespace(dirs=["A/grid", "B/grid/"], title=None, output="x.png", metric=None))
legend = [t.get_text() for t in figs[3].legends[0].get_texts()]
assert legend[0].startswith("A/grid: ok ") and legend[1].startswith("B/grid: ok "), legend
assert figs[3]._suptitle.get_text().startswith("A/grid: ok ") and "; B/grid: ok " in figs[3]._suptitle.get_text()
assert "\nA/grid " in figs[3].axes[0].get_title() and "\nB/grid " in figs[3].axes[0].get_title(), figs[3].axes[0].get_title()
PY
echo "PASS"
