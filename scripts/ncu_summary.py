#!/usr/bin/env python3
"""Summarises `ncu --metrics gpu__time_duration.sum --print-summary per-kernel` output: one row per
kernel and launch shape, its invocations and average time, sorted by total time, with each row's
share of the whole. Line 2 of the output names the top kernel (run.sh's profile row).
Numbers may carry thousands separators (1,234.00). When every duration is 0 the shares print as
'-'. A kernel whose header has no gpu__time_duration.sum line after it is left out of the table
and named on stderr (after the table, so line 2 stays the top kernel); no durations at all is a
one-line error, exit 1.

    scripts/ncu_summary.py NCU_OUTPUT [--top N]
"""
import argparse
import re
import sys


def strip_params(sig):
    """A demangled kernel signature without its parameter list: the trailing balanced (...),
    so template arguments in parentheses stay (act_fwd_kernel<(kiln::Act)1>)."""
    sig = sig.strip()
    if not sig.endswith(")"):
        return sig
    depth = 0
    for i in range(len(sig) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(sig[i], 0)
        if depth == 0:
            return sig[:i].rstrip()
    return sig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=20)
    a = ap.parse_args()
    rows, cur = [], None
    head = re.compile(r"^\s+(.+?) \((\d+), (\d+), (\d+)\)x\((\d+), (\d+), (\d+)\), .*Invocations (\d+)")
    num = r"(\d[\d,]*(?:\.\d*)?|\.\d+)"  # 1,234.00 (a locale's thousands separators) as well as 1234.00
    metric = re.compile(r"^\s+gpu__time_duration\.sum\s+(\w+)\s+%s\s+%s\s+%s" % (num, num, num))
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3,
             "s": 1e6, "second": 1e6}
    try:
        with open(a.path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        print("ncu_summary.py: %s: %s" % (a.path, e.strerror or e), file=sys.stderr)
        return 1
    unmatched = []  # "name (grid g)" of headers with no duration line before the next header
    for line in lines:
        m = head.match(line)
        if m:
            if cur:
                unmatched.append("%s (grid %s)" % cur[:2])
            name = strip_params(m.group(1))
            cur = (name, "%sx%sx%s" % m.group(2, 3, 4), int(m.group(8)))
            continue
        m = metric.match(line)
        if m and cur:
            if m.group(1) not in scale:
                print("ncu_summary.py: %s: unknown time unit '%s'" % (a.path, m.group(1)), file=sys.stderr)
                return 1
            avg = float(m.group(4).replace(",", "")) * scale[m.group(1)]
            rows.append((avg * cur[2], cur[0], cur[1], cur[2], avg))
            cur = None
    if cur:
        unmatched.append("%s (grid %s)" % cur[:2])
    if not rows:
        print("ncu_summary.py: no per-kernel durations in %s%s" % (
            a.path, " (%d kernel headers without a gpu__time_duration.sum line)" % len(unmatched) if unmatched else ""),
            file=sys.stderr)
        return 1
    total = sum(r[0] for r in rows)
    rows.sort(reverse=True)
    print("%d launches, %.1f us of kernel time (ncu's clocks and cache flushes: longer than a real run)"
          % (sum(r[3] for r in rows), total))
    share = lambda t: "%.1f%%" % (100 * t / total) if total > 0 else "-"  # every duration 0: no shares
    top = rows[0]
    print("top: %s (grid %s) %s of the time, %d launches of %.2f us" % (top[1], top[2], share(top[0]), top[3], top[4]))
    print("%10s %6s  %-60s %-12s %5s %9s" % ("total us", "share", "kernel", "grid", "n", "avg us"))
    for r in rows[:a.top]:
        print("%10.1f %6s  %-60s %-12s %5d %9.2f" % (r[0], share(r[0]), r[1][-60:], r[2], r[3], r[4]))
    if unmatched:
        sys.stdout.flush()  # after the table: run.sh reads line 2 of stdout and stderr together
        print("ncu_summary.py: %d kernels without a gpu__time_duration.sum line, left out: %s"
              % (len(unmatched), "; ".join(unmatched)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
