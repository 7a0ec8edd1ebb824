#!/usr/bin/env bash
# scripts/plot.py renders each view from real app outputs (lr_find CSV, train_mnist JSONL, a
# grid and a random sweep directory, a grid over seeds) to non-empty PNGs. Skips when matplotlib is missing.
set -euo pipefail
: "${KILN_BIN:?}" "${KILN_SRC:?}" "${KILN_TEST_DATA:?}"
py=""
for c in python3 /usr/bin/python3; do
  if command -v "$c" >/dev/null && "$c" -c "import matplotlib" 2>/dev/null; then py=$c; break; fi
done
[ -n "$py" ] || { echo "SKIP: matplotlib is not installed (apt-get install python3-matplotlib)"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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
# A sweep trial's curve is labelled with its parameters (from results.csv), and the lr panel
# follows the step records where the run logged them: a one-cycle run's 16 steps in 2 epochs.
"$KILN_BIN/train_mnist" "${common[@]}" --train-limit 256 --epochs 2 --log-every 1 --log oc.jsonl > /dev/null 2>&1
"$py" - "$KILN_SRC/scripts" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import plot
assert plot.trial_label("grid/trials/trial-1.jsonl") == "trial-1 (lr=0.003 batch-size=128)", plot.trial_label("grid/trials/trial-1.jsonl")
assert plot.trial_label("oc.jsonl") == "oc"
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
[ $rc -ne 0 ] && grep -q "no 'seed' parameter" err.txt || { echo "FAIL: seeds without a seed rc=$rc"; cat err.txt; exit 1; }
# Directories that swept different parameters: the shared one (lr) is plotted, the rest named.
"$py" "$plot" sweep seeds random -o mixed.png > out.txt
check mixed.png
grep -q "left out: batch-size, seed" out.txt || { echo "FAIL: mixed sweeps"; cat out.txt; exit 1; }

set +e
"$py" "$plot" lr-find missing.csv -o x.png 2> err.txt
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "missing.csv" err.txt || { echo "FAIL: missing input rc=$rc"; cat err.txt; exit 1; }

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
assert plot.sweep_goal("metric: {name: test_loss}\n") == ("test_loss", False)
assert plot.sweep_goal("metric: {name: test_loss, goal: maximize}\n") == ("test_loss", True)
assert plot.sweep_goal("method: grid\n") == ("test_acc", True)
assert plot.sweep_goal("metric: {name: test_acc}\n", "val_loss") == ("val_loss", False)
assert plot.sweep_goal("metric:\n  name: test_loss\nmethod: grid\n") == ("test_loss", False)  # block style
PY
echo "PASS"
