#!/usr/bin/env python3
"""Side-by-side table of bench_train (Google Benchmark JSON) and pytorch_reference.py (JSON
lines): images/s per model and batch for kiln eager/graphs and PyTorch eager/graphs/compile,
and the ratios kiln best / PyTorch eager and kiln best / PyTorch best (graphs or compile).
Usage: bench_table.py bench_train.json pytorch.jsonl"""
import json
import re
import sys


def kiln_rows(path):
    rows = {}
    try:
        data = json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"bench_table: no kiln results ({e})", file=sys.stderr)
        return rows
    for b in data.get("benchmarks", []):
        m = re.match(r"BM_TrainEpoch/(\w+)/batch:(\d+)/graphs:(\d)", b.get("name", ""))
        if not m or "images_per_s" not in b:
            continue
        mode = "graphs" if m.group(3) == "1" else "eager"
        rows[(m.group(1), int(m.group(2)), mode)] = float(b["images_per_s"])
    return rows


def torch_rows(path):
    rows, notes = {}, []
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return rows, notes
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "images_per_s" in r:
            rows[(r["model"], int(r["batch"]), r["mode"])] = float(r["images_per_s"])
        elif "error" in r:
            notes.append(f"pytorch {r['model']} batch {r['batch']} {r['mode']}: {r['error']}")
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
