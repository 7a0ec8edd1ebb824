#!/usr/bin/env bash
# Runs the experiment catalogue (experiments/*.yaml) and writes DIR/catalogue.md: one row per
# experiment with its trial count, the best trial (parameters and metric) and the wall time;
# each sweep keeps its own directory DIR/<name>/ (results.csv, leaderboard.txt, per-trial
# JSONL), the LR range test its CSV and suggestions. Running again with the same DIR resumes:
# finished experiments are skipped and an interrupted sweep continues (sweep --resume), so the
# catalogue can be spread over several time-limited calls with --budget.
# Usage: scripts/catalogue.sh DIR [--only name1,name2] [--budget SECONDS] [--workers N] [-- run options]
#   run options apply to every experiment (e.g. -- --device cuda --data-dir data --epochs 2)
#   --workers N: up to N processes at once (default 1: one experiment after another). A sweep
#   of K trials runs as min(N, K) `sweep --worker i/W` jobs sharing its directory (their output
#   in out.<i>.txt, log.<i>.txt), then as one `sweep --resume`, which finds every trial recorded
#   and only writes leaderboard.txt (log.txt): its exit status is the experiment's. The jobs of
#   different experiments run side by side.
#   env: KILN_BIN (directory with sweep, lr_find), KILN_SRC (repository root)
# Exit: 0 when every selected experiment finished, 3 when the budget ran out first (run again),
# 1 when an experiment failed (its log is named), 2 for a bad argument or --only name, 130/143
# when SIGINT/SIGTERM stopped it (passed on to the running sweeps, which stop cleanly; run
# again to continue).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${KILN_SRC:-$(cd "$here/.." && pwd)}
[ $# -ge 1 ] || { echo "usage: catalogue.sh DIR [--only a,b] [--budget S] [--workers N] [-- run options]" >&2; exit 2; }
dir=$1
shift
only="" budget=0 workers=1
while [ $# -gt 0 ]; do
  case $1 in
    --only)
      [ -n "${2:-}" ] || { echo "catalogue.sh: --only needs a value (experiment names, comma-separated)" >&2; exit 2; }
      only=$2; shift 2 ;;
    --budget)
      [[ ${2:-} =~ ^(0|[1-9][0-9]{0,8})$ ]] || { echo "catalogue.sh: --budget '${2:-}': expected whole seconds" >&2; exit 2; }
      budget=$2; shift 2 ;;
    --workers)
      [[ ${2:-} =~ ^[1-9][0-9]{0,3}$ ]] ||
        { echo "catalogue.sh: --workers '${2:-}': expected a number of processes (1 or more)" >&2; exit 2; }
      workers=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "catalogue.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
runopts=("$@")
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
mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ] || { echo "catalogue.sh: $dir: not a writable directory" >&2; exit 2; }
start=$(date +%s)
# The experiments to run (e: index into names/files), in file order; each one's state:
# jobs: its jobs queued or running; t0/t1: its first job's start and last job's end (empty
# before it starts; t0 emptied once its seconds are written); nw: its sweep workers (1: one
# job); stopped: a job of it was stopped by a signal.
names=() files=()
for f in "$src"/experiments/*.yaml; do
  name=$(basename "$f" .yaml)
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  [ -f "$dir/$name/done" ] && continue
  names+=("$name") files+=("$f")
done
declare -A jobs=() t0=() t1=() nw=() stopped=()
# The queue holds E:s (start experiment E: make its jobs), E:I (its sweep worker I) and E:f
# (the experiment as one process: a sweep without --worker, or the LR range test); running maps
# each running job's pid to its token.
queue=()
for e in "${!names[@]}"; do queue+=("$e:s"); done
declare -A running=()
# A SIGINT/SIGTERM to this script goes on to the running jobs (timeout puts each in a process
# group of its own, which a terminal's Ctrl-C does not reach); the script then stops after them.
# The signal goes to each whole group: GNU timeout passes on only the first one, so a second
# Ctrl-C (which stops a sweep at once) would not reach the sweep through it. One that comes
# between two launches stops the next before it starts.
got=0
stop_job() {  # SIG PID: to that job's group (its pid alone until timeout makes one)
  kill -"$1" -- -"$2" 2>/dev/null || kill -"$1" "$2" 2>/dev/null
}
# shellcheck disable=SC2317  # (called from the traps)
stop_jobs() {  # SIG: to every running job
  local p
  for p in "${!running[@]}"; do stop_job "$1" "$p"; done
}
trap 'got=130; stop_jobs INT' INT
trap 'got=143; stop_jobs TERM' TERM
start_experiment() {  # E: its directory, and its jobs at the head of the queue
  local e=$1 d=$dir/${names[$1]} k=1 i
  mkdir -p "$d"
  rm -f "$d/failed" "$d"/out.*.txt "$d"/log.*.txt
  # The run options after --, NUL-separated, for catalogue_report.py's command line (a sweep
  # resumed with other options is refused by the sweep itself).
  printf '%s\0' "${runopts[@]}" >"$d/options"
  t0[$e]=$(date +%s.%N)
  # A sweep's trial count, from its first --dry-run line ("FILE: grid, K trials, ..."); when that
  # fails, one job (whose log then says why).
  if [ "$workers" -gt 1 ] && grep -q '^parameters:' "${files[$e]}"; then
    # (--dir and --resume: the dry run checks DIR, and refuses one with results without --resume)
    k=$("$bin/sweep" "${files[$e]}" --dir "$d" --resume --dry-run "${runopts[@]}" 2>/dev/null |
          sed -n '1s/^.*: [a-z]*, \([0-9]*\) trials, .*$/\1/p')
    k=${k:-1}
  fi
  nw[$e]=$((k < workers ? k : workers))
  if [ "${nw[$e]}" -le 1 ]; then
    nw[$e]=1 jobs[$e]=1 queue=("$e:f" "${queue[@]}")
  else
    jobs[$e]=${nw[$e]}
    for ((i = nw[$e] - 1; i >= 0; i--)); do queue=("$e:$i" "${queue[@]}"); done
  fi
}
launch() {  # TOKEN LEFT: that job in the background under timeout LEFT (0: none)
  local e=${1%:*} w=${1#*:} out err
  local f=${files[$e]} d=$dir/${names[$e]} cmd resume=() split=()
  out=$d/leaderboard.txt err=$d/log.txt
  [ "$w" = f ] || { out=$d/out.$w.txt err=$d/log.$w.txt split=(--worker "$w/${nw[$e]}"); }
  if grep -q '^parameters:' "$f"; then
    [ -s "$d/results.jsonl" ] && resume=(--resume)
    # SIGTERM makes sweep stop the running trial cleanly (not recorded; --resume reruns it).
    cmd=("$bin/sweep" "$f" --dir "$d" "${resume[@]}" "${split[@]}" "${runopts[@]}")
  else
    cmd=("$bin/lr_find" --config "$f" --lr-find-csv "$d/lr_find.csv" "${runopts[@]}")
  fi
  timeout -s TERM "$2" "${cmd[@]}" >"$out" 2>"$err" &
  running[$!]=$1
  [ $got -eq 0 ] || stop_job "$([ $got -eq 130 ] && echo INT || echo TERM)" $!  # came as it started
}
close() {  # E: add its wall time (first job's start to last job's end) to its seconds
  local d=$dir/${names[$1]} prev
  prev=$(cat "$d/seconds" 2>/dev/null || echo 0)
  [ -z "${t1[$1]:-}" ] ||
    awk -v a="$prev" -v b="${t0[$1]}" -v c="${t1[$1]}" 'BEGIN{printf "%.1f\n", a + c - b}' >"$d/seconds"
  t0[$1]=""
  [ -z "${stopped[$1]:-}" ] || echo "catalogue.sh: stopped during ${names[$1]} (run again to continue)" >&2
}
status=0 halt=0  # halt: launch nothing more (the budget ran out, or a job was stopped)
finished() {  # PID RC: that job ended with RC
  local tok=${running[$1]} rc=$2
  local e=${tok%:*} w=${tok#*:} d
  d=$dir/${names[$e]}
  unset "running[$1]"
  t1[$e]=$(date +%s.%N)
  jobs[$e]=$((jobs[$e] - 1))
  if [ "$rc" -eq 0 ]; then
    [ "$w" != f ] || touch "$d/done"
  elif [ $got -ne 0 ] || [ "$rc" -eq 130 ] || [ "$rc" -eq 143 ]; then  # stopped by a signal
    stopped[$e]=1 halt=1
    [ $got -ne 0 ] || status=$rc
  elif [ "$rc" -eq 124 ]; then  # the budget ran out
    [ "$status" -eq 130 ] || [ "$status" -eq 143 ] || status=3
    halt=1
  elif [ "$w" = f ]; then
    echo "catalogue.sh: ${names[$e]} failed (exit $rc): $(tail -1 "$d/log.txt")" >&2
    echo "$rc" >"$d/failed"
    [ "$status" -ne 0 ] || status=1
  fi
  # A worker's failure is not the experiment's: it exits 1 when every trial recorded so far
  # failed, others' included, which may be none of theirs yet. The final sweep --resume decides
  # (it also runs any trial a failed worker left; normally none is left, and it only prints).
  [ "${jobs[$e]}" -eq 0 ] || return 0
  if [ "$w" != f ] && [ $halt -eq 0 ]; then
    jobs[$e]=1 queue=("$e:f" "${queue[@]}")
  else
    close "$e"
  fi
}
while :; do
  while [ $got -eq 0 ] && [ $halt -eq 0 ] && [ ${#queue[@]} -gt 0 ] && [ ${#running[@]} -lt "$workers" ]; do
    left=0
    if [ "$budget" -gt 0 ]; then
      left=$((budget - ($(date +%s) - start)))
      if [ "$left" -le 0 ]; then status=3 halt=1; break; fi
    fi
    tok=${queue[0]}
    queue=("${queue[@]:1}")
    if [ "${tok#*:}" = s ]; then start_experiment "${tok%:*}"; else launch "$tok" "$left"; fi
  done
  [ ${#running[@]} -gt 0 ] || break
  reaped=0
  for p in "${!running[@]}"; do
    kill -0 "$p" 2>/dev/null && continue
    # Dead: wait gives its exit status at once (a trap that fires now ends it with 128+SIG,
    # which reads as stopped by that signal: the job's work is not lost, a rerun continues it).
    wait "$p"
    finished "$p" $?
    reaped=1
  done
  [ $reaped -eq 1 ] || sleep 0.2
done
for e in "${!names[@]}"; do [ -z "${t0[$e]:-}" ] || close "$e"; done  # started, not ended (stopped)
[ $got -eq 0 ] || status=$got
trap - INT TERM
python3 - "$dir" "$src" "$here" <<'EOF'
import os, re, sys
root, src = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from catalogue_report import read_records  # (scripts/catalogue_report.py)
from kiln_records import expected_seeds, mean_std, score, seed_groups, spec_metric  # (scripts/kiln_records.py)
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
        # in trial order, so ties go to the lowest trial id (or first trial of a setting), as in
        # the sweep's leaderboard, whatever order --workers wrote them in; torn lines skipped
        recs = read_records(res)
        metric, maximize = spec_metric(spec)
        ok = [r for r in recs if score(r) is not None]
        if ok and any("seed" in r.get("params", {}) for r in ok):
            # A seed parameter: the best setting by its mean over seeds (the best single seed is
            # the selection bias the over-seeds table is there to avoid). A setting whose every
            # seed finished ranks before one where some failed, were pruned or have not run yet
            # (an unfinished sweep): a mean over the lucky survivors would flatter it. The seeds
            # expected: the file's seed values, else the most any setting has.
            by_setting = seed_groups(recs)  # setting -> its trials so far
            groups = {k: [v for v in map(score, rs) if v is not None] for k, rs in by_setting.items()}
            n = expected_seeds(spec, by_setting)
            sign = 1 if maximize else -1
            key, vals = max(((k, g) for k, g in groups.items() if g),
                            key=lambda kv: (len(kv[1]) >= n, sign * mean_std(kv[1])[0]))
            mean, std = mean_std(vals)
            params = " ".join("%s=%s" % kv for kv in key)
            seeds = ("%d seeds" % len(vals) if len(vals) >= n else
                     "%d of %d seeds; the others failed, were pruned or have not run" % (len(vals), n))
            rows.append("| %s | %d%s | %s | %s %.4f +- %.4f (mean of %s) | %s |"
                        % (name, len(recs), state, params, metric, mean, std, seeds, secs))
        elif ok:
            best = (max if maximize else min)(ok, key=score)
            params = " ".join("%s=%s" % kv for kv in best.get("params", {}).items())
            rows.append("| %s | %d%s | %s | %s %.4f | %s |" % (name, len(recs), state, params, metric, score(best), secs))
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
# a summary that failed leaves catalogue.md stale: not a success, whatever the experiments did
[ $? -eq 0 ] || { echo "catalogue.sh: could not write $dir/catalogue.md (above)" >&2; [ "$status" -ne 0 ] || status=1; }
exit $status
