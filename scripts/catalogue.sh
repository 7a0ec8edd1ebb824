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
# 1 when an experiment failed (its log is named), 2 for a bad argument or --only name, 130/143
# when SIGINT/SIGTERM stopped it (passed on to the running sweep, which stops cleanly; run
# again to continue).
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
if [ -n "$only" ]; then
  IFS=, read -r -a wanted <<<"$only"
  for w in "${wanted[@]}"; do
    [ -f "$src/experiments/$w.yaml" ] ||
      { echo "catalogue.sh: --only: no experiment '$w' (experiments/$w.yaml)" >&2; exit 2; }
  done
fi
mkdir -p "$dir"
start=$(date +%s)
status=0
# A SIGINT/SIGTERM to this script goes on to the experiment running (timeout puts it in a process
# group of its own, which a terminal's Ctrl-C does not reach); the script then stops after it.
# The signal goes to that whole group: GNU timeout passes on only the first one, so a second
# Ctrl-C (which stops a sweep at once) would not reach the sweep through it. One that comes
# between two experiments stops the next before it starts.
child="" got=0
stop_child() {  # SIG: to the running experiment's group (its pid alone until timeout makes one)
  [ -n "$child" ] || return 0
  kill -"$1" -- -"$child" 2>/dev/null || kill -"$1" "$child" 2>/dev/null
}
trap 'got=130; stop_child INT' INT
trap 'got=143; stop_child TERM' TERM
run() {  # run OUT ERR CMD...: CMD in the background (so the traps run at once), its exit in rc
  local out=$1 err=$2
  shift 2
  "$@" >"$out" 2>"$err" &
  child=$!
  [ $got -eq 0 ] || stop_child "$([ $got -eq 130 ] && echo INT || echo TERM)"  # came as it started
  wait "$child"
  rc=$?
  while kill -0 "$child" 2>/dev/null; do  # a trapped signal ended the wait, not the child
    wait "$child"
    rc=$?
  done
  child=""
}
for f in "$src"/experiments/*.yaml; do
  name=$(basename "$f" .yaml)
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  [ $got -eq 0 ] || { status=$got; break; }  # a signal between two experiments
  d=$dir/$name
  mkdir -p "$d"
  [ -f "$d/done" ] && continue
  rm -f "$d/failed"
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
    run "$d/leaderboard.txt" "$d/log.txt" timeout -s TERM "${left}" "$bin/sweep" "$f" --dir "$d" "${resume[@]}" "$@"
  else
    run "$d/leaderboard.txt" "$d/log.txt" timeout -s TERM "${left}" "$bin/lr_find" --config "$f" \
      --lr-find-csv "$d/lr_find.csv" "$@"
  fi
  t1=$(date +%s.%N)
  prev=$(cat "$d/seconds" 2>/dev/null || echo 0)
  awk -v a="$prev" -v b="$t0" -v c="$t1" 'BEGIN{printf "%.1f\n", a + c - b}' >"$d/seconds"
  if [ $rc -eq 0 ]; then
    touch "$d/done"
  elif [ $got -ne 0 ] || [ $rc -eq 130 ] || [ $rc -eq 143 ]; then  # stopped by a signal
    status=$([ $got -ne 0 ] && echo $got || echo $rc)
    echo "catalogue.sh: stopped during $name (run again to continue)" >&2
    break
  elif [ $rc -eq 124 ]; then
    status=3
    break
  else
    echo "catalogue.sh: $name failed (exit $rc): $(tail -1 "$d/log.txt")" >&2
    echo "$rc" >"$d/failed"
    status=1
  fi
  [ $got -eq 0 ] || { status=$got; break; }
done
trap - INT TERM
python3 - "$dir" "$src" <<'EOF'
import json, os, re, statistics, sys
root, src = sys.argv[1], sys.argv[2]
rows = ["| experiment | trials | best | metric | wall s |", "|---|---|---|---|---|"]
for f in sorted(os.listdir(os.path.join(src, "experiments"))):
    name = f[:-5]
    d = os.path.join(root, name)
    if not f.endswith(".yaml") or not os.path.isdir(d):
        continue
    secs = open(os.path.join(d, "seconds")).read().strip() if os.path.exists(os.path.join(d, "seconds")) else "-"
    failed = os.path.join(d, "failed")
    state = ("" if os.path.exists(os.path.join(d, "done")) else
             " (failed, exit %s: see log.txt)" % open(failed).read().strip() if os.path.exists(failed) else
             " (unfinished)")
    res = os.path.join(d, "results.jsonl")
    spec = open(os.path.join(src, "experiments", f)).read()
    if re.search(r"^parameters:", spec, re.M):  # a sweep (else the LR range test)
        recs = [json.loads(l) for l in open(res) if l.strip().startswith("{")] if os.path.exists(res) else []
        m = re.search(r"metric:\s*\{name:\s*(\w+)(?:,\s*goal:\s*(\w+))?", spec)
        metric = m.group(1) if m else "test_acc"
        goal = (m.group(2) if m and m.group(2) else ("minimize" if "loss" in metric else "maximize"))
        ok = [r for r in recs if r.get("status") == "ok" and isinstance(r.get("metric"), (int, float))]
        pick = max if goal == "maximize" else min
        if ok and any("seed" in r.get("params", {}) for r in ok):
            # A seed parameter: the best setting by its mean over seeds (the best single seed is
            # the selection bias the over-seeds table is there to avoid). A setting whose every
            # seed finished ranks before one where some failed, were pruned or have not run yet
            # (an unfinished sweep): a mean over the lucky survivors would flatter it. The seeds
            # expected: the file's seed values, else the most any setting has.
            groups, trials = {}, {}  # setting -> metrics of its ok seeds; -> its trials so far
            for r in recs:
                key = tuple((k, v) for k, v in r.get("params", {}).items() if k != "seed")
                trials[key] = trials.get(key, 0) + 1
                groups.setdefault(key, [])
                if r in ok:
                    groups[key].append(r["metric"])
            sv = re.search(r"^\s*seed:\s*\{\s*values:\s*\[([^\]]*)\]", spec, re.M)
            n = len([v for v in sv.group(1).split(",") if v.strip()]) if sv else max(trials.values())
            sign = 1 if goal == "maximize" else -1
            key, vals = max(((k, g) for k, g in groups.items() if g),
                            key=lambda kv: (len(kv[1]) >= n, sign * statistics.mean(kv[1])))
            mean = statistics.mean(vals)
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            params = " ".join("%s=%s" % kv for kv in key)
            seeds = ("%d seeds" % len(vals) if len(vals) >= n else
                     "%d of %d seeds; the others failed, were pruned or have not run" % (len(vals), n))
            rows.append("| %s | %d%s | %s | %s %.4f +- %.4f (mean of %s) | %s |"
                        % (name, len(recs), state, params, metric, mean, std, seeds, secs))
        elif ok:
            best = pick(ok, key=lambda r: r["metric"])
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
