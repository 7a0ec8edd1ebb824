#!/usr/bin/env python3
"""Markdown for docs/EXPERIMENTS.md from a catalogue run (scripts/catalogue.sh DIR).

    scripts/catalogue_report.py DIR [--src REPO] [--device TEXT] > report.md

One section per experiment that has a directory under DIR, in file order: the question (the
file's leading comment), the command, and the measured table. A sweep's table has a row per
trial in trial order (its parameters, status, the metric, train/validation/test accuracy and
the share of zero weights where recorded, epochs run and seconds); a sweep with a `seed`
parameter also gets one row per setting (mean +- sample std of the metric over its seeds that
finished, and how many did). A trial that repeats an earlier one's setting and seed (a random
sweep's draw) is counted once there, by the first, and the repeats are named, as in the
sweep's own over-seeds table (`sweep --report`). The LR range test gives its
suggestions. Nothing is computed that the run did not record: a trial that failed or was pruned
says so, an unfinished experiment is marked unfinished. --device goes into each section's
"measured on" line (e.g. "NVIDIA H200, full MNIST").
"""
import argparse
import os
import re
import shlex
import sys

from kiln_records import expected_seeds, mean_std, read_jsonl, score, seed_groups, spec_metric


def question(spec):
    """The leading comment block, without '# ' and without its 'Run:' line."""
    lines = []
    for line in spec.splitlines():
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        text = re.sub(r"\s*Run:.*$", "", text)
        if text:
            lines.append(text)
    return re.sub(r"^Question:\s*", "", " ".join(lines))


def num(v, spec=".4f"):
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def read_records(path):
    """A sweep's results.jsonl in trial order, none when it does not exist. A line that does not
    parse (a writer killed mid-line leaves one, which the sweep skips and seals with a newline)
    is skipped here too."""
    recs = read_jsonl(path)[0] if os.path.exists(path) else []
    return sorted((r for r in recs if "trial" in r), key=lambda r: r.get("trial", 0))


def cell(v):
    """A table cell: '|' escaped, line breaks as spaces."""
    return str(v).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def sweep_section(name, d, spec, metric):
    recs = read_records(os.path.join(d, "results.jsonl"))
    if not recs:
        return ["(no trial recorded)"]
    keys = []
    for r in recs:
        for k in r.get("params", {}):
            if k not in keys:
                keys.append(k)
    # accuracies beside the metric, and what a record holds for the questions that need it
    # (validation scores, the share of zero weights for L1 vs L2)
    extra = [k for k in ("train_acc", "val_acc", "test_acc", "weight_sparsity")
             if k != metric and any(k in r for r in recs)]
    head = ["trial"] + keys + ["status", metric] + extra + ["epochs", "seconds"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in recs:
        p = r.get("params", {})
        status = r.get("status", "?")
        if status != "ok" and r.get("message"):
            status += ": " + r["message"]
        cells = [str(r.get("trial"))] + [cell(p.get(k, "")) for k in keys] + [cell(status)] + [
            num(r.get("metric"))] + [num(r.get(k)) for k in extra] + [
            str(r.get("epochs", "-")), num(r.get("seconds"), ".1f")]
        rows.append("| " + " | ".join(cells) + " |")
    out = rows
    if "seed" in keys:
        out += ["", "Over seeds (mean +- sample std of %s over the seeds that finished):" % metric, "",
                "| setting | seeds ok | mean | std |", "|---|---|---|---|"]
        repeats = []
        groups = seed_groups(recs, repeats)
        n = expected_seeds(spec, groups)
        for key, rs in groups.items():
            vals = [v for v in map(score, rs) if v is not None]
            mean, std = mean_std(vals)
            mean, std = num(mean) if vals else "-", num(std) if len(vals) > 1 else "-"
            label = " ".join("%s=%s" % kv for kv in key)
            out.append("| %s | %d of %d | %s | %s |" % (cell(label or "(all)"), len(vals), max(n, len(rs)), mean, std))
        if repeats:
            out += ["", "(%d trial%s an earlier trial's setting and seed, the same run again: counted once, by "
                    "the first; trial%s %s)" % (len(repeats), " repeats" if len(repeats) == 1 else "s repeat",
                                                "" if len(repeats) == 1 else "s",
                                                ", ".join(str(r.get("trial")) for r in repeats))]
    return out


def lr_find_section(d):
    text = open(os.path.join(d, "leaderboard.txt")).read() if os.path.exists(os.path.join(d, "leaderboard.txt")) else ""
    sug = re.findall(r"suggestion\s+(valley|steep|minimum|slide)\s+lr=(\S+)", text)
    if not sug:
        return ["(no suggestion recorded)"]
    return ["| suggestion | lr |", "|---|---|"] + ["| %s | %s |" % s for s in sug]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="the catalogue directory (scripts/catalogue.sh DIR)")
    ap.add_argument("--src", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    help="repository root holding experiments/ (default: this script's)")
    ap.add_argument("--device", default="", help="what it ran on, for each section's 'measured on' line")
    args = ap.parse_args()
    exp = os.path.join(args.src, "experiments")
    if not os.path.isdir(args.dir):
        sys.exit("catalogue_report.py: %s: no such directory" % args.dir)
    if not os.path.isdir(exp):
        sys.exit("catalogue_report.py: --src %s: no experiments/ directory there" % args.src)
    out = []
    for f in sorted(os.listdir(exp)):
        if not f.endswith(".yaml"):
            continue
        name, d = f[:-5], os.path.join(args.dir, f[:-5])
        if not os.path.isdir(d):
            continue
        spec = open(os.path.join(exp, f)).read()
        done = os.path.exists(os.path.join(d, "done"))
        secs = open(os.path.join(d, "seconds")).read().strip() if os.path.exists(os.path.join(d, "seconds")) else "-"
        is_sweep = re.search(r"^parameters:", spec, re.M) is not None
        metric = spec_metric(spec)[0]
        cmd = ("sweep experiments/%s" % f) if is_sweep else ("lr_find --config experiments/%s" % f)
        opts = os.path.join(d, "options")  # the run options catalogue.sh passed (since 2026-12-07)
        if os.path.exists(opts):
            cmd += "".join(" " + shlex.quote(a) for a in open(opts).read().split("\0") if a)
        failed = os.path.join(d, "failed")
        state = ("" if done else " (failed, exit %s)" % open(failed).read().strip() if os.path.exists(failed)
                 else " (unfinished)")
        out += ["### %s%s" % (name, state), "",
                "Question: %s" % (question(spec) or "(the file has no leading comment)"), "",
                "Command: `%s` (via `scripts/catalogue.sh`); measured on %s; wall time %s s." %
                (cmd, args.device or "(device not given)", secs), ""]
        out += sweep_section(name, d, spec, metric) if is_sweep else lr_find_section(d)
        out.append("")
    if not out:
        sys.exit("catalogue_report.py: %s holds no experiment directory" % args.dir)
    print("\n".join(out))


if __name__ == "__main__":
    main()
