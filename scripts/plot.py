#!/usr/bin/env python3
"""Plots for kiln's tuning outputs (matplotlib, Agg backend: no display needed).

  plot.py lr-find CURVE.csv -o lr.png          LR range test: loss vs lr (log-x), raw and
                                               smoothed, suggestions marked (CURVE.csv.suggestions);
                                               several CSVs (e.g. one per seed): the smoothed
                                               curves overlaid, each valley marked
  plot.py curves A.jsonl [B.jsonl ...] -o c.png  train/test loss, accuracy and lr vs epoch, one
                                               line per file (legend = file name, and for a
                                               sweep's trials/trial-<id>.jsonl the trial's
                                               parameters from DIR/results.csv); the lr panel
                                               follows the step records when the run logged
                                               them (--log-every), else each epoch's last step
  plot.py sweep DIR [DIR2 ...] -o s.png        metric vs each parameter (log-x where the values
                                               span >= 2 decades) and the coverage of the two
                                               most important parameters, one marker per DIR
                                               (e.g. a grid and a random sweep of the same budget)
  plot.py seeds DIR -o s.png                   a sweep with a "seed" parameter: one column per
                                               configuration (ranked by the mean), one line per
                                               seed across them (paired), mean +- std in black
"""
import argparse
import csv
import json
import math
import os
import re
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # the CLI test skips on this exit code's message
    sys.exit("plot.py: matplotlib is not installed (apt-get install python3-matplotlib)")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def lr_find(args):
    if len(args.csv) > 1:
        return lr_find_overlay(args)
    path = args.csv[0]
    lr, raw, smooth = read_curve(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(lr, raw, color="0.75", lw=0.8, label="loss")
    ax.plot(lr, smooth, color="C0", lw=1.6, label="smoothed (EMA 0.98, debiased)")
    markers = {"valley": ("C3", "o"), "steep": ("C1", "v"), "minimum": ("C2", "s"), "slide": ("C4", "D")}
    for s in read_suggestions(path):
        step = int(s["step"])
        if step >= len(lr):  # the CSV lost its last rows
            continue
        color, m = markers.get(s["method"], ("k", "x"))
        # minimum is reported as lr/10: mark the point on the curve, label the suggestion
        ax.plot(lr[step], smooth[step], m, color=color, ms=7,
                label=f"{s['method']}: {float(s['lr']):.2g}")
    lr_find_axes(ax, smooth, args.title or f"LR range test ({os.path.basename(path)})")
    fig.tight_layout()
    fig.savefig(args.output, dpi=args.dpi)


def read_curve(path):
    """An lr_find CSV as (lr, loss, smoothed_loss) lists."""
    rows = read_csv(path)
    keys = ("lr", "loss", "smoothed_loss")
    good = []
    for i, r in enumerate(rows):
        try:
            good.append([float(r[k]) for k in keys])
        except (TypeError, ValueError, KeyError):  # a torn or foreign row: keep what came before
            print(f"plot.py: {path}: row {i + 2} is incomplete; plotting the {len(good)} rows before it",
                  file=sys.stderr)
            break
    if not good:
        sys.exit(f"plot.py: {path}: no rows")
    return ([g[j] for g in good] for j in range(3))


def read_suggestions(csv_path):
    p = csv_path + ".suggestions"
    return read_csv(p) if os.path.exists(p) else []


def lr_find_axes(ax, smooth, title):
    finite = [v for v in smooth if math.isfinite(v)]
    if finite:  # keep the blow-up from flattening the interesting part
        lo, first = min(finite), finite[0]
        ax.set_ylim(lo - 0.1 * abs(lo), max(first, lo) * 1.3 + 0.05)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def lr_find_overlay(args):
    """Several range tests (e.g. one per seed): each smoothed curve with its valley marked."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    everything = []
    for i, path in enumerate(args.csv):
        lr, _, smooth = read_curve(path)
        everything += smooth
        valley = [s for s in read_suggestions(path) if s["method"] == "valley"]
        label = os.path.splitext(os.path.basename(path))[0]
        if valley:
            label += f" (valley {float(valley[0]['lr']):.2g})"
        ax.plot(lr, smooth, color=f"C{i % 10}", lw=1.3, label=label)
        if valley:
            step = int(valley[0]["step"])
            if step < len(lr):
                ax.plot(lr[step], smooth[step], "o", color=f"C{i % 10}", ms=6)
    lr_find_axes(ax, everything, args.title or f"LR range tests ({len(args.csv)} runs; dots: valley)")
    fig.tight_layout()
    fig.savefig(args.output, dpi=args.dpi)


def read_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a torn last line from a killed run
    return out


def num(v):
    return float("nan") if v is None else float(v)


def trial_label(path):
    """'trial-3 (lr=0.1 momentum=0.9)' for DIR/trials/trial-3.jsonl of a sweep, else the file name."""
    name = os.path.splitext(os.path.basename(path))[0]
    m = re.fullmatch(r"trial-(\d+)", name)
    results = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), "results.csv")
    if not m or not os.path.exists(results):
        return name
    try:
        with open(results, newline="") as f:
            rows = list(csv.reader(f))
        head = rows[0]
        params = head[3:len(head) - 10]  # trial,status,metric, the parameters, 10 fixed columns
        for row in rows[1:]:
            if len(row) == len(head) and row[0] == m.group(1):
                return name + " (" + " ".join(f"{p}={row[head.index(p)]}" for p in params) + ")"
    except (OSError, ValueError, IndexError):
        pass  # a torn or foreign results.csv: the file name will do
    return name


def step_lr(path, recs):
    """(x, lr) from the step records (x in epochs: epoch - 1 + the step's fraction of it), or None."""
    steps = [r for r in read_jsonl(path) if r.get("type") == "step" and "lr" in r]
    if not steps:
        return None
    ends = {r["epoch"]: r["step"] for r in recs if "step" in r}  # cumulative step at each epoch end
    xs = []
    for r in steps:
        e = r["epoch"]
        start, end = ends.get(e - 1, 0), ends.get(e)
        if end is None and e - 1 in ends:  # an epoch cut short: the previous one's length
            end = start + (ends[e - 1] - ends.get(e - 2, 0))
        xs.append(e - 1 + ((r["step"] - start) / (end - start) if end and end > start else 0.0))
    return xs, [num(r["lr"]) for r in steps]


def curves(args):
    runs = []
    for path in args.jsonl:
        recs = [r for r in read_jsonl(path) if "train_loss" in r and r.get("type", "epoch") == "epoch"]
        if not recs:
            print(f"plot.py: {path}: no epoch records, skipped", file=sys.stderr)
            continue
        runs.append((path, recs))
    # A fourth panel, weight sparsity, when some run has an L1/L2 penalty (the L1-vs-L2 question).
    penalised = any(num(r.get("l1_penalty")) > 0 or num(r.get("l2_penalty")) > 0
                    for _, recs in runs for r in recs if "weight_sparsity" in r)
    fig, axes = plt.subplots(1, 4 if penalised else 3, figsize=(17 if penalised else 13, 3.8))
    lr_by_step = False
    for i, (path, recs) in enumerate(runs):
        name = trial_label(path)
        c = f"C{i % 10}"
        ep = [r["epoch"] for r in recs]
        axes[0].plot(ep, [num(r["train_loss"]) for r in recs], "-o", ms=3, color=c, label=f"{name} train")
        axes[0].plot(ep, [num(r.get("test_loss")) for r in recs], "--s", ms=3, color=c, label=f"{name} test")
        axes[1].plot(ep, [num(r.get("train_acc")) for r in recs], "-o", ms=3, color=c, label=f"{name} train")
        axes[1].plot(ep, [num(r.get("test_acc")) for r in recs], "--s", ms=3, color=c, label=f"{name} test")
        if any("val_acc" in r for r in recs):  # runs with --val-split: the held-out curve, dotted
            axes[0].plot(ep, [num(r.get("val_loss")) for r in recs], ":^", ms=3, color=c, label=f"{name} val")
            axes[1].plot(ep, [num(r.get("val_acc")) for r in recs], ":^", ms=3, color=c, label=f"{name} val")
        per_step = step_lr(path, recs)
        if per_step:  # the schedule's real shape (cyclic, one-cycle, per-step decay)
            axes[2].plot(per_step[0], per_step[1], "-", lw=1.0, color=c, label=name)
            lr_by_step = True
        else:
            axes[2].plot(ep, [num(r.get("lr")) for r in recs], "-o", ms=3, color=c, label=name)
        if penalised:
            axes[3].plot(ep, [num(r.get("weight_sparsity")) for r in recs], "-o", ms=3, color=c, label=name)
    titles = ["loss", "accuracy",
              "learning rate (logged steps)" if lr_by_step else "learning rate (last step of epoch)",
              "weight sparsity (|w| < threshold)"]
    for ax, t in zip(axes, titles):
        ax.set_xlabel("epoch")
        ax.set_title(t)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.output, dpi=args.dpi)


def as_float(s):
    try:
        v = float(s)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


def ranks(v):
    """1-based ranks, ties given their average rank (as tuning/importance.cpp)."""
    idx = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and v[idx[j + 1]] == v[idx[i]]:
            j += 1
        for k in range(i, j + 1):
            r[idx[k]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return r


def explained(xs, ys, numeric, max_bins=4):
    """Between-bin / total variance, binned exactly as tuning/importance.cpp does (so the plot
    titles match the sweep's importance table): one bin per distinct value up to max_bins, else
    min(max_bins, max(2, trials // 3)) equal-count bins over the ranks, ties kept together."""
    n = len(ys)
    if n < 2:
        return float("nan")
    mean = sum(ys) / n
    total = sum((y - mean) ** 2 for y in ys)
    if total <= 0:
        return float("nan")  # every trial scored the same: nothing to explain
    if numeric:
        distinct = sorted(set(xs))
        b = min(len(distinct), max_bins)
        if len(distinct) > max_bins:
            b = max(2, min(b, n // 3))
        if len(distinct) <= b:
            keys = [distinct.index(x) for x in xs]
        else:
            r = ranks(xs)
            keys = [min(b - 1, int((ri - 1) * b / n)) for ri in r]
    else:
        keys = xs
    groups = {}
    for k, y in zip(keys, ys):
        groups.setdefault(k, []).append(y)
    between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    return between / total


def sweep(args):
    sweeps = []
    for d in args.dirs:
        recs = read_jsonl(os.path.join(d, "results.jsonl"))
        if not recs:
            sys.exit(f"plot.py: {d}/results.jsonl: no results")
        sweeps.append((os.path.basename(os.path.normpath(d)), recs))
    # The parameters every directory swept (a grid over seeds next to random sweeps without a
    # seed parameter: plot lr and momentum, say what is left out).
    params = [p for p in sweeps[0][1][0]["params"] if all(p in recs[0]["params"] for _, recs in sweeps)]
    left_out = sorted({p for _, recs in sweeps for p in recs[0]["params"]} - set(params))
    if not params:
        sys.exit("plot.py: sweep: the directories share no parameter")
    if left_out:
        print(f"plot.py: sweep: not in every directory, left out: {', '.join(left_out)}")
    metric = args.metric or "metric"
    ok = [(name, [r for r in recs if r["status"] == "ok" and r.get("metric") is not None]) for name, recs in sweeps]
    allrecs = [r for _, rs in ok for r in rs]
    ys = [float(r[metric]) for r in allrecs]
    imp = []
    for p in params:
        vals = [r["params"].get(p) for r in allrecs]
        fv = [as_float(v) for v in vals]
        numeric = all(v is not None for v in fv)
        imp.append((explained(fv if numeric else vals, ys, numeric), p, numeric))
    imp.sort(key=lambda t: -1 if math.isnan(t[0]) else t[0], reverse=True)
    ncols = len(params) + (1 if len(params) >= 2 else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.8), squeeze=False)
    axes = axes[0]
    for j, p in enumerate(params):
        ax = axes[j]
        numeric = next(n for _, q, n in imp if q == p)
        cats = sorted({r["params"][p] for r in allrecs}) if not numeric else None
        for k, (name, rs) in enumerate(ok):
            xs = [as_float(r["params"][p]) if numeric else cats.index(r["params"][p]) for r in rs]
            ax.scatter(xs, [float(r[metric]) for r in rs], s=18, alpha=0.8, color=f"C{k}", label=name)
        if numeric:
            pos = [as_float(r["params"][p]) for r in allrecs]
            if pos and min(pos) > 0 and max(pos) / min(pos) >= 100:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(cats)))
            ax.set_xticklabels(cats, rotation=30, fontsize=8)
        e = next(v for v, q, _ in imp if q == p)
        ax.set_title(f"{p} (explained {e:.3f})" if math.isfinite(e) else f"{p} (explained -)", fontsize=9)
        ax.set_xlabel(p)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if len(params) >= 2:
        ax = axes[-1]
        (_, px, nx), (_, py, ny) = imp[0], imp[1]
        for k, (name, recs) in enumerate(sweeps):
            def coord(r, p, n):
                v = r["params"][p]
                return as_float(v) if n else v
            ax.scatter([coord(r, px, nx) for r in recs], [coord(r, py, ny) for r in recs],
                       s=22, alpha=0.8, color=f"C{k}", marker="os^D"[k % 4], label=f"{name} ({len(recs)})")
        for p, n, setter in ((px, nx, ax.set_xscale), (py, ny, ax.set_yscale)):
            vals = [as_float(r["params"][p]) for _, recs in sweeps for r in recs] if n else []
            if vals and min(vals) > 0 and max(vals) / min(vals) >= 100:
                setter("log")
        ax.set_xlabel(px)
        ax.set_ylabel(py)
        ax.set_title("coverage of the two most important parameters", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.output, dpi=args.dpi)


def sweep_goal(spec, metric_arg=None):
    """(label, maximize) for ranking a sweep's configurations: the metric named on the command
    line (ranked by its own kind), else the sweep file's metric and goal; without a goal the
    sweep maximizes the accuracies and minimizes the losses (docs/FORMATS.md)."""
    if metric_arg and metric_arg != "metric":
        return metric_arg, "acc" in metric_arg
    name = goal = None
    try:  # the file as YAML (flow or block style)
        import yaml
        metric = (yaml.safe_load(spec) or {}).get("metric") or {}
        name, goal = metric.get("name"), metric.get("goal")
    except ImportError:  # no PyYAML: the flow style kiln's examples use
        m = re.search(r"metric:\s*\{[^}]*\bname:\s*(\w+)", spec)
        g = re.search(r"\bgoal:\s*(\w+)", spec)
        name, goal = m and m.group(1), g and g.group(1)
    name = name or "test_acc"
    return name, goal == "maximize" if goal else "acc" in name


def seeds(args):
    recs = read_jsonl(os.path.join(args.dir, "results.jsonl"))
    if not recs:
        sys.exit(f"plot.py: {args.dir}/results.jsonl: no results")
    if "seed" not in recs[0]["params"]:
        sys.exit(f"plot.py: seeds: {args.dir} has no 'seed' parameter (add seed: {{values: [0, 1, 2]}} to the sweep)")
    metric = args.metric or "metric"
    try:  # the sweep's metric name and goal, from its copy of the YAML
        with open(os.path.join(args.dir, "sweep.yaml")) as f:
            spec = f.read()
    except OSError:
        spec = ""
    label, maximize = sweep_goal(spec, args.metric)
    configs, by_seed = {}, {}
    for r in recs:
        key = " ".join(f"{v}" for k, v in r["params"].items() if k != "seed")
        configs.setdefault(key, [])
        if r["status"] == "ok" and r.get(metric) is not None and math.isfinite(float(r[metric])):
            configs[key].append(float(r[metric]))
            by_seed.setdefault(r["params"]["seed"], {})[key] = float(r[metric])

    def stats(v):
        if not v:
            return float("nan"), 0.0
        m = sum(v) / len(v)
        sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
        return m, sd

    order = sorted(configs, key=lambda k: (not configs[k], -stats(configs[k])[0] if maximize else stats(configs[k])[0]))
    x = {k: i for i, k in enumerate(order)}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(order) + 1.5), 4.6))
    for j, (seed, vals) in enumerate(sorted(by_seed.items(), key=lambda kv: str(kv[0]))):
        pts = sorted((x[k], v) for k, v in vals.items())
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{j}", alpha=0.55, lw=1, ms=4, label=f"seed {seed}")
    for k in order:
        m, sd = stats(configs[k])
        if configs[k]:
            ax.errorbar([x[k]], [m], yerr=[sd], fmt="_", color="black", ms=18, capsize=4, lw=1.5)
    ax.errorbar([], [], yerr=[], fmt="_", color="black", label="mean +- std")
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([k.replace(" ", "\n") for k in order], fontsize=7)
    ax.set_ylabel(label)
    ax.set_title(args.title or f"{os.path.basename(os.path.normpath(args.dir))}: {label} over seeds", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.output, dpi=args.dpi)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("lr-find")
    a.add_argument("csv", nargs="+")
    b = sub.add_parser("curves")
    b.add_argument("jsonl", nargs="+")
    c = sub.add_parser("sweep")
    c.add_argument("dirs", nargs="+")
    c.add_argument("--metric", help="results field to plot (default: the sweep's metric)")
    d = sub.add_parser("seeds")
    d.add_argument("dir")
    d.add_argument("--metric", help="results field to plot (default: the sweep's metric)")
    for p in (a, b, c, d):
        p.add_argument("-o", "--output", required=True)
        p.add_argument("--title")
        p.add_argument("--dpi", type=int, default=90)
    args = ap.parse_args()
    try:
        {"lr-find": lr_find, "curves": curves, "sweep": sweep, "seeds": seeds}[args.cmd](args)
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"plot.py: {args.cmd}: {e}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
