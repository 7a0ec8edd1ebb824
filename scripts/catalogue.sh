#!/usr/bin/env bash
# Runs the experiment catalogue (experiments/*.yaml) and writes DIR/catalogue.md: one row per
# experiment with its trial count, the best trial (parameters and metric) and the wall time;
# each sweep keeps its own directory DIR/<name>/ (results.csv, leaderboard.txt, per-trial
# JSONL), the LR range test its CSV and suggestions. Running again with the same DIR resumes:
# finished experiments are skipped and an interrupted sweep continues (sweep --resume), so the
# catalogue can be spread over several time-limited calls with --budget.
# Usage: scripts/catalogue.sh DIR [--only name1,name2] [--budget SECONDS] [-- run options]
#   run options apply to every experiment (e.g. -- --device cuda --data-dir data --epochs 2)
#   env: KILN_BIN (directory with sweep, lr_find), KILN_SRC (repository root)
# Exit: 0 when every selected experiment finished, 3 when the budget ran out first (run again),
# 1 when an experiment failed (its log is named).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${KILN_SRC:-$(cd "$here/.." && pwd)}
[ $# -ge 1 ] || { echo "usage: catalogue.sh DIR [--only a,b] [--budget S] [-- run options]" >&2; exit 2; }
dir=$1
shift
only="" budget=0
while [ $# -gt 0 ]; do
  case $1 in
    --only) only=${2:?--only needs a value}; shift 2 ;;
    --budget) budget=${2:?--budget needs a value}; shift 2 ;;
    --) shift; break ;;
    *) echo "catalogue.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
bin=${KILN_BIN:-}
if [ -z "$bin" ]; then
  for c in "$src/bin" "$src"/build*; do [ -x "$c/sweep" ] && { bin=$c; break; }; done
fi
[ -x "$bin/sweep" ] && [ -x "$bin/lr_find" ] || { echo "catalogue.sh: no sweep/lr_find (set KILN_BIN)" >&2; exit 1; }
mkdir -p "$dir"
start=$(date +%s)
status=0
for f in "$src"/experiments/*.yaml; do
  name=$(basename "$f" .yaml)
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  d=$dir/$name
  mkdir -p "$d"
  [ -f "$d/done" ] && continue
  left=0
  if [ "$budget" -gt 0 ]; then
    left=$((budget - ($(date +%s) - start)))
    if [ "$left" -le 0 ]; then status=3; break; fi
  fi
  t0=$(date +%s.%N)
  if grep -q '^parameters:' "$f"; then
    resume=()
    [ -s "$d/results.jsonl" ] && resume=(--resume)
    # SIGTERM makes sweep stop the running trial cleanly (not recorded; --resume reruns it).
    timeout -s TERM "${left}" "$bin/sweep" "$f" --dir "$d" "${resume[@]}" "$@" >"$d/leaderboard.txt" 2>"$d/log.txt"
  else
    timeout -s TERM "${left}" "$bin/lr_find" --config "$f" --lr-find-csv "$d/lr_find.csv" "$@" \
      >"$d/leaderboard.txt" 2>"$d/log.txt"
  fi
  rc=$?
  t1=$(date +%s.%N)
  prev=$(cat "$d/seconds" 2>/dev/null || echo 0)
  awk -v a="$prev" -v b="$t0" -v c="$t1" 'BEGIN{printf "%.1f\n", a + c - b}' >"$d/seconds"
  if [ $rc -eq 0 ]; then
    touch "$d/done"
  elif [ $rc -eq 124 ] || [ $rc -eq 143 ]; then
    status=3
    break
  else
    echo "catalogue.sh: $name failed (exit $rc): $(tail -1 "$d/log.txt")" >&2
    status=1
  fi
done
python3 - "$dir" "$src" <<'EOF'
import json, os, re, sys
root, src = sys.argv[1], sys.argv[2]
rows = ["| experiment | trials | best | metric | wall s |", "|---|---|---|---|---|"]
for f in sorted(os.listdir(os.path.join(src, "experiments"))):
    name = f[:-5]
    d = os.path.join(root, name)
    if not f.endswith(".yaml") or not os.path.isdir(d):
        continue
    secs = open(os.path.join(d, "seconds")).read().strip() if os.path.exists(os.path.join(d, "seconds")) else "-"
    state = "" if os.path.exists(os.path.join(d, "done")) else " (unfinished)"
    res = os.path.join(d, "results.jsonl")
    spec = open(os.path.join(src, "experiments", f)).read()
    if re.search(r"^parameters:", spec, re.M):  # a sweep (else the LR range test)
        recs = [json.loads(l) for l in open(res) if l.strip().startswith("{")] if os.path.exists(res) else []
        m = re.search(r"metric:\s*\{name:\s*(\w+)(?:,\s*goal:\s*(\w+))?", spec)
        metric = m.group(1) if m else "test_acc"
        goal = (m.group(2) if m and m.group(2) else ("minimize" if "loss" in metric else "maximize"))
        ok = [r for r in recs if r.get("status") == "ok" and isinstance(r.get("metric"), (int, float))]
        if ok:
            best = (max if goal == "maximize" else min)(ok, key=lambda r: r["metric"])
            params = " ".join("%s=%s" % kv for kv in best.get("params", {}).items())
            rows.append("| %s | %d%s | %s | %s %.4f | %s |" % (name, len(recs), state, params, metric, best["metric"], secs))
        else:
            rows.append("| %s | %d%s | (no finished trial) | - | %s |" % (name, len(recs), state, secs))
    else:
        out = os.path.join(d, "leaderboard.txt")
        text = open(out).read() if os.path.exists(out) else ""
        sug = ", ".join("%s %s" % m.groups() for m in re.finditer(r"suggestion\s+(valley|steep|minimum|slide)\s+lr=(\S+)", text))
        rows.append("| %s | 1%s | %s | - | %s |" % (name, state, sug or "(no suggestion)", secs))
open(os.path.join(root, "catalogue.md"), "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
EOF
exit $status
