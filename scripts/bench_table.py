#!/usr/bin/env python3
"""Side-by-side table of bench_train (Google Benchmark JSON) and pytorch_reference.py (JSON
lines): images/s per model and batch for kiln eager/graphs and PyTorch eager/graphs/compile,
and the ratios kiln best / PyTorch eager and kiln best / PyTorch best (graphs or compile).
Usage: bench_table.py bench_train.json pytorch.jsonl
With --benchmark_repetitions the median aggregate is used. A file that is missing or unreadable
is named on stderr and its columns stay empty; exit 1 when neither gave a row."""
import json
import re
import sys

from bench_summary import rows_of  # the median-preferred rows, as bench_summary.py reads them
from kiln_records import read_jsonl


def note(msg):
    print("bench_table: " + msg, file=sys.stderr)


def kiln_rows(path):
    """{(model, batch, mode): images/s}; with --benchmark_repetitions the median aggregate (the
    other aggregates, mean/stddev/cv, are not rates), else the single run."""
    rows = {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        note(f"no kiln results: {path}: {getattr(e, 'strerror', None) or e}")
        return rows
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        note(f"no kiln results: {path}: not Google Benchmark JSON (no 'benchmarks' list)")
        return rows
    for name, b in rows_of(data).items():
        m = re.match(r"BM_TrainEpoch/(\w+)/batch:(\d+)/graphs:(\d)", name)
        if m and isinstance(b.get("images_per_s"), (int, float)):
            rows[(m.group(1), int(m.group(2)), "graphs" if m.group(3) == "1" else "eager")] = float(b["images_per_s"])
    return rows


def torch_rows(path):
    rows, notes = {}, []
    try:
        recs, bad = read_jsonl(path)  # lines that are not JSON objects skipped and counted
    except OSError as e:
        note(f"no PyTorch results: {path}: {e.strerror or e}")
        return rows, notes
    for r in recs:
        try:
            if "images_per_s" in r:
                rows[(str(r["model"]), int(r["batch"]), str(r["mode"]))] = float(r["images_per_s"])
            elif "error" in r:
                notes.append(f"pytorch {r['model']} batch {r['batch']} {r['mode']}: {r['error']}")
        except (ValueError, TypeError, KeyError):
            bad += 1
    if bad:
        note(f"{path}: {bad} unreadable line{'s' if bad > 1 else ''} skipped")
    return rows, notes


def fmt(v):
    return f"{v:,.0f}" if v else "-"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    k = kiln_rows(sys.argv[1])
    t, notes = torch_rows(sys.argv[2])
    keys = sorted({(m, b) for (m, b, _) in list(k) + list(t)})
    if not keys:
        note("no results in either file")
        return 1
    head = ["model", "batch", "kiln eager", "kiln graphs", "torch eager", "torch graphs", "torch compile",
            "kiln/torch eager", "kiln/torch best"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for m, b in keys:
        ke, kg = k.get((m, b, "eager")), k.get((m, b, "graphs"))
        te, tg, tc = t.get((m, b, "eager")), t.get((m, b, "graphs")), t.get((m, b, "compile"))
        kbest = max([v for v in (ke, kg) if v] or [0])
        tbest = max([v for v in (tg, tc) if v] or [0])
        print(f"| {m} | {b} | {fmt(ke)} | {fmt(kg)} | {fmt(te)} | {fmt(tg)} | {fmt(tc)} | "
              f"{ratio(kbest, te)} | {ratio(kbest, tbest)} |")
    print("\nimages/s (median epoch); kiln best = max(eager, graphs); torch best = max(graphs, compile)")
    for n in notes:
        print("note: " + n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
