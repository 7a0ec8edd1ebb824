#!/usr/bin/env python3
"""Plots for kiln's tuning outputs (matplotlib, Agg backend: no display needed).

  plot.py lr-find CURVE.csv -o lr.png          LR range test: loss vs lr (log-x), raw and
                                               smoothed, each suggestion (CURVE.csv.suggestions)
                                               marked at the lr it suggests (minimum: also the
                                               lowest loss, whose lr/10 it is); several CSVs (e.g.
                                               one per seed): the smoothed curves overlaid, each
                                               valley marked, each named by its file (and, where
                                               names repeat, its directory: mnist/lr_find). The y
                                               range covers every drawn curve; what lies above it
                                               is counted in the legend
  plot.py curves A.jsonl [B.jsonl ...] -o c.png  train/test loss, accuracy and lr vs epoch, one
                                               legend entry per file (the file name, and for a
                                               sweep's trials/trial-<id>.jsonl the trial's
                                               parameters and, unless ok, status from
                                               DIR/results.csv); a run that diverged is marked
                                               with an x where it did ("(diverged, epoch E)"), one
                                               that finished no epoch shows its step losses; losses
                                               far above the rest are drawn as a triangle at the
                                               top edge; the lr panel follows the step records when
                                               the run logged them (--log-every), else each
                                               epoch's last step (log scale; an lr of 0 there: a
                                               triangle at the bottom edge)
  plot.py sweep DIR [DIR2 ...] -o s.png        metric vs each parameter (log-x for log_uniform
                                               parameters, and for value lists spanning >= 2
                                               decades; failed trials as a red x at the worst
                                               edge, pruned ones hollow) with each directory's
                                               importance, and the coverage of the two most
                                               important parameters, one marker per DIR (e.g. a
                                               grid and a random sweep of the same budget; DIRs
                                               of one name are told apart by their parents); a
                                               "seed" parameter is pooled, not plotted. The metric
                                               and goal come from DIR/sweep.yaml (as YAML, else
                                               by pattern where YAML cannot read it)
  plot.py seeds DIR -o s.png                   a sweep with a "seed" parameter: one column per
                                               configuration (ranked by the mean), one line per
                                               seed across them (paired), mean +- std in black
                                               (none from fewer than 2 ok seeds), "n/N ok" under
                                               each column, failed seeds as a red x

Errors are one line: a missing or unreadable input exits 1, a --metric that is not a results
field exits 2 (listing the valid ones).
"""
import argparse
import csv
import errno
import json
import math
import os
import re
import sys
import textwrap

# kiln_records.py lies beside this file: found also when plot.py is not run as a script (runpy)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_records  # noqa: E402
from kiln_records import as_float, mean_std, score, seed_groups, spec_metric  # noqa: E402

# Without matplotlib, --help still answers; a plot then exits 1 naming the interpreter that
# lacks it (apt's python3-matplotlib is /usr/bin/python3's, not a pyenv's or a venv's).
NO_MATPLOTLIB = None
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.transforms as mtransforms
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator
except ImportError:
    NO_MATPLOTLIB = (f"plot.py: matplotlib is not installed for {sys.executable} (apt-get install "
                     "python3-matplotlib for /usr/bin/python3, or pip install matplotlib)")

# A failed (diverged) trial: a red x on an axis edge, where its score would be.
FAILED = dict(marker="x", color="red", ms=7, mew=1.8, ls="none")
MARKERS = "o^sDv<>ph*"  # the runs' markers, one per cycle of the ten colours


def note(msg):
    print(f"plot.py: {msg}", file=sys.stderr)


def output_path(out):
    """The file -o names: matplotlib adds .png to a name without a suffix."""
    return out if os.path.splitext(out)[1] else out + ".png"


def save(fig, args):
    """Writes a temp file beside the output and renames it over it, so a full disk or a kill
    leaves the previous PNG whole (as kiln writes its files); a link is written through."""
    out = output_path(args.output)
    path = os.path.realpath(out)  # (the format is the name's, as matplotlib takes it)
    if os.path.islink(path):  # a loop of links: realpath gives up and returns it
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), out)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp.{os.getpid()}")
    try:
        fig.savefig(tmp, format=os.path.splitext(out)[1][1:].lower(), dpi=args.dpi,
                    bbox_inches="tight")  # legends outside the axes too
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):  # named as given (ENOSPC names no file, a rename the temp)
            raise OSError(e.errno, e.strerror, out) from e
        raise


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fmt(v):
    """A parameter value for a label: integers as written, other numbers %.3g, text as is."""
    s = str(v)
    f = as_float(s)
    return s if f is None or re.fullmatch(r"-?\d+", s) else f"{f:.3g}"


def edge_marks(ax, xs, where, **style):
    """Markers at the data x values on the bottom (where=0) or top (1) edge of the axes."""
    if xs:
        tr = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(xs, [where] * len(xs), transform=tr, clip_on=False, zorder=5, **style)


def lr_find(args):
    if len(args.csv) > 1:
        return lr_find_overlay(args)
    path = args.csv[0]
    lr, raw, smooth = read_curve(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(lr, raw, color="0.75", lw=0.8, label="loss")
    ax.plot(lr, smooth, color="C0", lw=1.6, label="smoothed (EMA 0.98, debiased)")
    markers = {"valley": ("C3", "o"), "steep": ("C1", "v"), "minimum": ("C2", "s"), "slide": ("C4", "D")}
    top = (lr_ylim([raw, smooth]) or (0, math.inf))[1]
    for s, step, at in suggestions(path, lr):
        color, m = markers.get(s["method"], ("k", "x"))
        label = f"{s['method']}: {at:.2g}"
        if step is None:  # the CSV lost its last rows: say what is missing
            ax.plot([], [], " ", label=label + " (past the CSV's last row)")
            continue
        if s["method"] == "minimum":  # reported as lr/10: mark both, so plot and text agree
            ax.plot(lr[step], smooth[step], m, mfc="none", color=color, ms=7,
                    label=f"lowest smoothed loss, lr {lr[step]:.2g}")
            label += f" (= {lr[step]:.2g} / 10)"
        y = loss_at(lr, smooth, at)
        if y > top:  # on the blow-up: at the top edge
            y, label = top, label + " (off the top)"
        # valley, the default, on top: a suggestion at the same lr (slide often is) hid it
        ax.plot(at, y, m, color=color, ms=7, clip_on=False, zorder=6 if s["method"] == "valley" else 5,
                label=label)
    lr_find_axes(ax, [raw, smooth], args.title or f"LR range test ({os.path.basename(path)})",
                 curve_loss(path)[1])
    fig.tight_layout()
    save(fig, args)


LOSS_OF = {"loss": "training loss", "val_loss": "validation loss", "test_loss": "test-set loss"}


def curve_loss(path):
    """The loss column of an lr_find CSV (its header names it: loss, val_loss with --lr-find-val
    on a validation split, test_loss on the test set) and what to call it on an axis."""
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    col = next((c for c in ("val_loss", "test_loss") if c in header), "loss")
    return col, LOSS_OF[col]


def read_curve(path):
    """An lr_find CSV as (lr, loss, smoothed_loss) lists."""
    rows = read_csv(path)
    col = curve_loss(path)[0]
    keys = ("lr", col, "smoothed_" + col)
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


def suggestions(path, lr):
    """(row, step or None when past the curve's end, suggested lr) per readable suggestion."""
    out = []
    for s in read_suggestions(path):
        try:
            step, at = int(s["step"]), float(s["lr"])
        except (TypeError, ValueError, KeyError):
            note(f"{path}.suggestions: an incomplete row ({s.get('method')}) skipped")
            continue
        if step >= len(lr):
            note(f"{path}: suggestion {s['method']} (lr {at:.2g}, step {step}) is past the CSV's "
                 f"last row (step {len(lr) - 1}): not drawn")
            step = None
        out.append((s, step, at))
    return out


def loss_at(lr, loss, x):
    """The curve's loss at learning rate x, interpolated in log(lr) (the ramp is exponential)."""
    pts = [(math.log(a), b) for a, b in zip(lr, loss) if a > 0 and math.isfinite(b)]
    if not pts or x <= 0:
        return float("nan")
    lx = math.log(x)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= lx <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (lx - x0) / (x1 - x0)
    return min(pts, key=lambda p: abs(p[0] - lx))[1]


def lr_ylim(curves):
    """(bottom, top) of a range test's y axis: every drawn curve's lowest value up to 1.3x the
    highest start (any argument order gives the same range: the blow-up does not flatten the
    interesting part), or None without a finite value."""
    finite = [v for c in curves for v in c if math.isfinite(v)]
    if not finite:
        return None
    lo = min(finite)
    first = max(next(v for v in c if math.isfinite(v)) for c in curves if any(math.isfinite(v) for v in c))
    return lo - 0.1 * abs(lo), max(first, lo) * 1.3 + 0.05


def lr_find_axes(ax, curves, title, ylabel):
    """Axes of a range test (lr_ylim); the points above the top are counted in the legend."""
    lim = lr_ylim(curves)
    if lim:
        ax.set_ylim(*lim)
        above = [v for c in curves for v in c if math.isfinite(v) and v > lim[1]]
        bad = sum(1 for c in curves for v in c if not math.isfinite(v))
        what = [f"{len(above)} points above the top (up to {max(above):.2g})"] if above else []
        what += [f"{bad} non-finite"] if bad else []
        if what:
            ax.plot([], [], " ", label=", ".join(what))
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3, which="both")


def lr_find_overlay(args):
    """Several range tests (e.g. one per seed): each smoothed curve with its valley marked."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    drawn = []
    # mnist/lr_find.csv and fashion/lr_find.csv: 'mnist/lr_find' and 'fashion/lr_find'
    names = [dict(label=os.path.splitext(os.path.basename(p))[0], path=p) for p in args.csv]
    distinct_labels(names)
    for i, path in enumerate(args.csv):
        lr, _, smooth = read_curve(path)
        drawn.append(smooth)
        valley = [(step, at) for s, step, at in suggestions(path, lr) if s["method"] == "valley"]
        label = names[i]["label"]
        if valley:
            label += f" (valley {valley[0][1]:.2g}" + (", past the CSV's end)" if valley[0][0] is None else ")")
        ax.plot(lr, smooth, color=f"C{i % 10}", ls="-" if i < 10 else "--", lw=1.3, label=label)
        if valley and valley[0][0] is not None:
            ax.plot(valley[0][1], loss_at(lr, smooth, valley[0][1]), "o", color=f"C{i % 10}", ms=6)
    kinds = sorted({curve_loss(p)[1] for p in args.csv})
    lr_find_axes(ax, drawn, args.title or f"LR range tests ({len(args.csv)} runs; dots: valley)",
                 kinds[0] if len(kinds) == 1 else "loss (" + ", ".join(kinds) + ")")
    fig.tight_layout()
    save(fig, args)


def read_jsonl(path):
    """The JSON objects of a JSONL file; unreadable lines (a torn last line from a killed run,
    or not JSON at all) are skipped and counted on stderr."""
    out, torn = kiln_records.read_jsonl(path)
    if torn:
        note(f"{path}: {torn} unreadable line{'s' if torn > 1 else ''} skipped (torn, or not JSON)")
    return out


def num(v):
    return float("nan") if v is None else float(v)


FIXED_COLUMNS = {"trial", "status", "metric", "epochs_run", "val_acc", "val_loss", "test_acc",
                 "test_loss", "train_acc", "train_loss", "weight_sparsity", "seconds", "message"}


def trial_info(path):
    """(name, [(param, value)], status, epochs run) of DIR/trials/trial-<id>.jsonl from
    DIR/results.csv; ([], None, None) with the file name for any other file."""
    name = os.path.splitext(os.path.basename(path))[0]
    m = re.fullmatch(r"trial-(\d+)", name)
    results = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), "results.csv")
    if not m or not os.path.exists(results):
        return name, [], None, None
    try:
        with open(results, newline="") as f:
            rows = list(csv.reader(f))
        head = rows[0]
        # trial,status,metric, the parameters, then the fixed columns, which no parameter may be
        # named (kiln refuses it); by name, since older kilns wrote fewer of them.
        fixed = set(range(3)) | {i for i, c in enumerate(head) if c in FIXED_COLUMNS}
        run = head.index("epochs_run") if "epochs_run" in head else None
        if run is None and "epochs" in head:  # before 2026-12-02 the column was "epochs"
            run = len(head) - 1 - head[::-1].index("epochs")  # (a parameter may be too)
            fixed.add(run)
        params = [(i, c) for i, c in enumerate(head) if i not in fixed]
        for row in rows[1:]:
            if len(row) == len(head) and row[0] == m.group(1):
                epochs = row[run] if run is not None else "?"
                return name, [(p, row[i]) for i, p in params], row[1], epochs
    except (OSError, ValueError, IndexError):
        pass  # a torn or foreign results.csv: the file name will do
    return name, [], None, None


def trial_label(path):
    """'trial-3 (lr=0.1 momentum=0.9)' for DIR/trials/trial-3.jsonl of a sweep (values %.3g, and
    the status unless ok: 'pruned after epoch 2', 'failed'), else the file name."""
    name, params, status, epochs = trial_info(path)
    if params:
        name += " (" + " ".join(f"{p}={fmt(v)}" for p, v in params) + ")"
    if status == "pruned":
        name += f" pruned after epoch {epochs}"
    elif status and status != "ok":
        name += f" {status}"
    return name


def epoch_x(epoch, step, ends, default_len=None):
    """A step's x in epochs: epoch - 1 + its fraction of that epoch. ends: the cumulative step at
    each finished epoch's end; an epoch cut short is as long as the one before it, else
    default_len steps."""
    start, end = ends.get(epoch - 1, 0), ends.get(epoch)
    if end is None and epoch - 1 in ends:
        end = start + (ends[epoch - 1] - ends.get(epoch - 2, 0))
    if end is None and default_len:
        end = start + default_len
    return epoch - 1 + ((step - start) / (end - start) if end and end > start else 0.0)


def step_lr(path, recs):
    """(x, lr) from the step records (x in epochs: epoch - 1 + the step's fraction of it), or None."""
    return steps_lr([r for r in read_jsonl(path) if r.get("type") == "step"], recs)


def steps_lr(steps, recs, default_len=None):
    steps = [r for r in steps if "lr" in r]
    if not steps:
        return None
    ends = {r["epoch"]: r["step"] for r in recs if "step" in r}  # cumulative step at each epoch end
    return [epoch_x(r["epoch"], r["step"], ends, default_len) for r in steps], [num(r["lr"]) for r in steps]


# The record fields the curves read as numbers.
NUMBER_FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc", "val_loss", "val_acc", "lr",
                 "loss", "momentum", "grad_norm", "weight_sparsity", "l1_penalty", "l2_penalty")


def distinct_labels(runs):
    """Runs whose labels collide (runs/a/log.jsonl and runs/b/log.jsonl, both 'log') are
    labelled with the shortest end of their directory that no other such run shares ('a/log');
    the same file given twice is numbered. (Also lr-find's CSVs and sweep's directories.)"""
    by_label = {}
    for run in runs:
        by_label.setdefault(run["label"], []).append(run)
    for label, same in by_label.items():
        if len(same) < 2:
            continue
        dirs = [os.path.abspath(os.path.dirname(run["path"])).split(os.sep) for run in same]
        if any(d != dirs[0] for d in dirs):
            for i, run in enumerate(same):
                for k in range(1, len(dirs[i]) + 1):
                    tail = "/".join(dirs[i][-k:])
                    if all("/".join(d[-k:]) != tail for d in dirs if d != dirs[i]):
                        break
                run["label"] = f"{tail}/{label}"
        twice = {}  # one file given twice (or its link): numbered, 'log (1)' and 'log (2)'
        for run in same:
            twice.setdefault(run["label"], []).append(run)
        for runs_of in twice.values():
            for i, run in enumerate(runs_of if len(runs_of) > 1 else []):
                run["label"] += f" ({i + 1})"


def load_run(path):
    """A --log JSONL as a dict: epoch records (the last of a repeated epoch: a resume writes one
    again), step records, the diverged record (or None), and its legend label."""
    recs = read_jsonl(path)
    for r in recs:
        for k in ("epoch", "step"):
            if k in r and (not isinstance(r[k], int) or isinstance(r[k], bool)):
                raise ValueError(f"{path}: {k} {json.dumps(r[k])} is not an integer")
        for k in NUMBER_FIELDS:  # (null is a non-finite number: kiln writes NaN so)
            v = r.get(k)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                raise ValueError(f"{path}: {k} {json.dumps(v)} is not a number")
    epochs = {}
    for r in recs:
        if r.get("type", "epoch") == "epoch" and "train_loss" in r and "epoch" in r:
            epochs[r["epoch"]] = r
    steps = [r for r in recs if r.get("type") == "step" and "epoch" in r and "step" in r]
    # A diverged record counts only when no later epoch record passes it (a resume got further);
    # --restore-best's record (the weights the run ended with, its result, are an earlier
    # epoch's) only when no epoch record follows it (a resume trained on).
    diverged = restored = None
    for r in recs:
        if r.get("type") == "diverged" and "epoch" in r:
            diverged = r
        elif r.get("type") == "restore_best" and "epoch" in r:
            restored = r
        elif r.get("type", "epoch") == "epoch" and "train_loss" in r:
            restored = None
            if diverged and num(r.get("epoch")) >= num(diverged.get("epoch")):
                diverged = None
    _, _, status, _ = trial_info(path)
    return dict(path=path, epochs=[epochs[e] for e in sorted(epochs)], steps=steps, diverged=diverged,
                restored=restored, status=status, label=trial_label(path))


def run_losses(run):
    """Every loss the loss panel draws for a run (epoch records, else step records)."""
    if run["epochs"]:
        return [num(r.get(k)) for r in run["epochs"] for k in ("train_loss", "test_loss", "val_loss")]
    return [num(r.get("loss")) for r in run["steps"]]


def loss_cap(runs):
    """The top of the (log) loss axis when some losses stand far above the rest: 10x the
    largest loss below a jump of more than 100x (from the median up), and at most 1e4x the
    median. None when nothing needs cutting."""
    v = sorted(x for run in runs for x in run_losses(run) if math.isfinite(x) and x > 0)
    if len(v) < 2:
        return None
    mid = (len(v) - 1) // 2
    cap = 1e4 * v[mid]
    for a, b in zip(v[mid:], v[mid + 1:]):
        if b > 100 * a:
            cap = min(cap, 10 * a)
            break
    return cap if v[-1] > cap else None


def curves(args):
    runs = []
    for path in args.jsonl:
        run = load_run(path)
        if not run["epochs"] and not run["diverged"] and not any("loss" in r for r in run["steps"]):
            if run["status"] is None:  # not a sweep trial whose fate results.csv knows
                sys.exit(f"plot.py: curves: {path}: no records (empty, or not a kiln --log JSONL)")
            note(f"{path}: no records; listed in the legend")
        else:
            run["drawn"] = True
        runs.append(run)
    if not any(run.get("drawn") for run in runs):
        sys.exit(f"plot.py: curves: no records in {', '.join(args.jsonl)}")
    distinct_labels(runs)
    # A run that finished no epoch shows its step losses, its x from the other runs' first epoch.
    firsts = sorted(r["epochs"][0]["step"] for r in runs if r["epochs"] and "step" in r["epochs"][0])
    epoch_len = firsts[len(firsts) // 2] if firsts else None
    # A fourth panel, weight sparsity, when some run has an L1/L2 penalty (the L1-vs-L2 question).
    penalised = any(num(r.get("l1_penalty")) > 0 or num(r.get("l2_penalty")) > 0
                    for run in runs for r in run["epochs"] if "weight_sparsity" in r)
    fig, axes = plt.subplots(1, 4 if penalised else 3, figsize=(17 if penalised else 13, 3.8))
    cap = loss_cap(runs)
    kinds, handles, xs = set(), [], []
    for i, run in enumerate(runs):
        style = dict(color=f"C{i % 10}", marker=MARKERS[(i // 10) % len(MARKERS)], ms=3)
        label = run["label"] + draw_run(axes, run, style, cap, epoch_len, penalised, kinds, xs)
        handles.append(Line2D([], [], ls="-", label=label, **style))
    curves_axes(axes, runs, cap, xs, lr_title(kinds), kinds)
    handles += style_handles(kinds, cap)
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 0.93), fontsize=7,
               ncol=1 + len(handles) // 26, title="solid: train, dashed: test" +
               (", dotted: val" if "val" in kinds else ""), title_fontsize=7)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    save(fig, args)


def draw_run(axes, run, style, cap, epoch_len, penalised, kinds, xs):
    """Draws one run on the panels; returns its label's suffix (diverged, step losses, ...)."""
    recs, c = run["epochs"], style["color"]
    ep = [r["epoch"] for r in recs]
    ends = {r["epoch"]: r["step"] for r in recs if "step" in r}
    suffix = ""
    if recs:
        splits = [("train", "-"), ("test", "--")] + ([("val", ":")] if any("val_acc" in r for r in recs) else [])
        for split, ls in splits:
            loss = [num(r.get(f"{split}_loss")) for r in recs]
            axes[0].plot(ep, loss, ls=ls, **style)
            axes[1].plot(ep, [num(r.get(f"{split}_acc")) for r in recs], ls=ls, **style)
            if cap:
                off = [e for e, v in zip(ep, loss) if v > cap]
                edge_marks(axes[0], off, 1, marker="^", color=c, ms=6, ls="none")
            kinds.add(split)
        xs += ep
    elif any("loss" in r for r in run["steps"]):  # no epoch finished: the step losses
        pts = [(epoch_x(r["epoch"], r["step"], ends, epoch_len or max_step(run)), num(r.get("loss")))
               for r in run["steps"] if "loss" in r]
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], ls="-", lw=0.8, color=c,
                     marker=style["marker"], ms=2, markevery=max(1, len(pts) // 20))
        if cap:
            edge_marks(axes[0], [x for x, v in pts if v > cap], 1, marker="^", color=c, ms=6, ls="none")
        xs += [p[0] for p in pts]
        suffix += " (step losses: no epoch finished)"
        kinds.add("steps")
    elif not run["diverged"]:
        return " (no records)"
    per_step = steps_lr(run["steps"], recs, epoch_len or max_step(run))
    if per_step:  # the schedule's real shape (cyclic, one-cycle, per-step decay)
        axes[2].plot(per_step[0], per_step[1], "-", lw=1.0, color=c)
        kinds.add("lr-steps")
    elif recs:
        axes[2].plot(ep, [num(r.get("lr")) for r in recs], "-", **style)
        kinds.add("lr-epochs")
    if penalised and recs:
        axes[3].plot(ep, [num(r.get("weight_sparsity")) for r in recs], "-", **style)
    d = run["diverged"]
    if d:  # an x where it diverged: on the loss panel's top edge and the accuracy panel's bottom
        x = epoch_x(d["epoch"], d.get("step", 0), ends, epoch_len or max_step(run)) if "step" in d \
            else d["epoch"] - 0.5
        for ax, where in ((axes[0], 1), (axes[1], 0)):
            edge_marks(ax, [x], where, marker="x", color=c, ms=9, mew=2.2, ls="none")
        xs.append(x)
        suffix = f" (diverged, epoch {d['epoch']}" + (")" if recs else "; step losses)" if run["steps"]
                                                   else "; no epoch finished)")
        kinds.add("diverged")
    elif run["status"] == "failed" and not recs:
        suffix += " (no epoch finished)"
    rb = run.get("restored")
    if rb and recs:  # the result is the restored epoch's: a star on its test loss and accuracy
        for ax, key in ((axes[0], "test_loss"), (axes[1], "test_acc")):
            if math.isfinite(num(rb.get(key))):
                ax.plot([rb["epoch"]], [num(rb[key])], marker="*", ms=11, color=c, mec="k", mew=0.6, ls="none")
        acc = num(rb.get("test_acc"))
        suffix += f" (restored epoch {rb['epoch']}" + (f": test_acc {acc:.4g})" if math.isfinite(acc) else ")")
        kinds.add("restored")
    return suffix


def max_step(run):
    """A stand-in epoch length for a run that finished none: the last step it reached."""
    s = [r["step"] for r in run["steps"]] + ([run["diverged"].get("step", 0)] if run["diverged"] else [])
    return max(s) if s and max(s) > 0 else None


def lr_title(kinds):
    if "lr-steps" in kinds and "lr-epochs" in kinds:
        return "learning rate (thin: logged steps; dots: epoch ends)"
    return "learning rate (logged steps)" if "lr-steps" in kinds else "learning rate (last step of epoch)"


def curves_axes(axes, runs, cap, xs, lr_title_text, kinds=None):
    titles = ["loss", "accuracy", lr_title_text, "weight sparsity\n(" + sparsity_threshold(runs) + ")"]
    ylabels = ["loss (log scale)", "accuracy", "learning rate (log scale)", "fraction of weights"]
    for ax, t, yl in zip(axes, titles, ylabels):
        ax.set_xlabel("epoch")
        ax.set_ylabel(yl)
        ax.set_title(t, fontsize=10)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if xs and max(xs) - min(xs) < 1:  # one epoch: not a 0.96..1.04 axis
            ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    # Log scale only over positive data: a run that diverged in epoch 1 without --log-every draws
    # only its x (at the edge, in axes coordinates), and a log axis with nothing on it stops
    # tight_layout ("Data has no positive values").
    log_loss = has_positive(axes[0])
    if log_loss:
        axes[0].set_yscale("log")
    else:
        axes[0].set_ylabel("loss")
        axes[0].set_yticks([])
    if cap:
        lo = min([v for run in runs for v in run_losses(run) if math.isfinite(v) and v > 0] + [cap])
        axes[0].set_ylim(lo / 1.5, cap)
        axes[0].set_title(f"loss (above {cap:.3g}: triangle at the top)", fontsize=10)
    if not any(line.get_transform() == axes[1].transData for line in axes[1].get_lines()):
        axes[1].set_ylim(0, 1)  # nothing but the x: not -0.05..0.05
    if has_positive(axes[2]):
        axes[2].set_yscale("log")
        # An lr of 0 (--lr 0, a manual schedule's frozen epochs) has no place on a log axis (the
        # run vanished): a triangle at the bottom edge where it is, in the run's colour.
        for line in list(axes[2].get_lines()):
            if line.get_transform() != axes[2].transData:
                continue
            zero = [x for x, y in zip(line.get_xdata(), line.get_ydata()) if math.isfinite(float(y)) and float(y) <= 0]
            if zero:
                edge_marks(axes[2], zero[::max(1, len(zero) // 40)], 0, marker="v", color=line.get_color(),
                           ms=6, ls="none")
                if kinds is not None:
                    kinds.add("lr-zero")
    else:
        axes[2].set_ylabel("learning rate")
    if log_loss:
        plain_log_labels(axes[0])


def has_positive(ax):
    """Whether a line drawn in data coordinates has a finite y > 0 (a log axis can show it)."""
    return any(line.get_transform() == ax.transData and
               any(math.isfinite(y) and y > 0 for y in map(float, line.get_ydata()))
               for line in ax.get_lines())


def plain_log_labels(ax):
    """Tick labels of a log axis as 0.5, 2, 30 (not 2x10^0); minor ticks labelled where the axis
    spans few decades (all under 0.7 of one, 2, 3 and 5 under two)."""
    lo, hi = ax.get_ylim()
    span = math.log10(hi / lo) if lo > 0 and hi > lo else 99
    keep = "123456789" if span < 0.7 else "235" if span < 2 else ""

    def minor(v, _):
        t = f"{v:g}"
        return t if t.lstrip("0.")[:1] in keep and keep else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def sparsity_threshold(runs):
    """The --sparsity-threshold the runs used, from a sweep's run_options.json where known."""
    seen = set()
    for run in runs:
        p = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(run["path"]))), "run_options.json")
        try:
            with open(p) as f:
                seen.add(fmt(json.load(f)["sparsity-threshold"]))
        except (OSError, ValueError, KeyError, TypeError):
            seen.add(None)
    if len(seen) == 1 and None not in seen:
        return f"|w| < {seen.pop()}"
    return "|w| < --sparsity-threshold, default 0.001"


def style_handles(kinds, cap):
    out = []
    if "steps" in kinds:
        out.append(Line2D([], [], color="0.3", lw=0.8, label="thin line: step losses"))
    if "diverged" in kinds:
        out.append(Line2D([], [], color="0.3", marker="x", ms=8, mew=2, ls="none",
                          label="x: diverged here (edge of loss/accuracy)"))
    if cap:
        out.append(Line2D([], [], color="0.3", marker="^", ls="none", label=f"triangle: loss above {cap:.3g}"))
    if "restored" in kinds:
        out.append(Line2D([], [], color="0.3", marker="*", ms=10, ls="none",
                          label="star: --restore-best's weights (the result)"))
    if "lr-zero" in kinds:
        out.append(Line2D([], [], color="0.3", marker="v", ls="none",
                          label="triangle at the lr panel's bottom: lr 0 (off the log scale)"))
    return out


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


def bin_keys(xs, numeric, max_bins=4):
    """Each trial's bin, as tuning/importance.cpp bins them: one bin per distinct value up to
    max_bins, else min(max_bins, max(2, trials // 3)) equal-count bins over the ranks, ties kept
    together; categorical parameters: one bin per value."""
    if not numeric:
        return list(xs)
    n = len(xs)
    distinct = sorted(set(xs))
    b = min(len(distinct), max_bins)
    if len(distinct) > max_bins:
        b = max(2, min(b, n // 3))
    if len(distinct) <= b:
        return [distinct.index(x) for x in xs]
    return [min(b - 1, int((ri - 1) * b / n)) for ri in ranks(xs)]


def explained(xs, ys, numeric, max_bins=4):
    """Between-bin / total variance, binned exactly as tuning/importance.cpp does (so the plot
    titles match the sweep's importance table)."""
    n = len(ys)
    if n < 2 or min(ys) == max(ys):
        return float("nan")  # every trial scored the same: nothing to explain (the mean of
        # equal values can differ from them by rounding, and the ratio would be that noise's)
    mean = sum(ys) / n
    total = sum((y - mean) ** 2 for y in ys)
    if total <= 0:
        return float("nan")
    groups = {}
    for k, y in zip(bin_keys(xs, numeric, max_bins), ys):
        groups.setdefault(k, []).append(y)
    between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
    return min(1.0, between / total)  # a share: rounding must not push it past 1


def chance(xs, numeric, max_bins=4):
    """What a parameter that changes nothing explains on average: (k-1)/(n-1) for k bins of n
    trials (the sweep's importance table prints it too)."""
    n = len(xs)
    return (len(set(bin_keys(xs, numeric, max_bins))) - 1) / (n - 1) if n > 1 else float("nan")


RESULT_FIELDS = ("metric", "test_acc", "test_loss", "val_acc", "val_loss", "train_acc", "train_loss",
                 "weight_sparsity", "seconds", "epochs")


def check_metric(cmd, field, recs):
    """Exit 2 naming the valid fields when --metric names none of the results' numeric fields."""
    valid = [f for f in RESULT_FIELDS if any(f in r for r in recs)]
    if field not in valid:
        print(f"plot.py: {cmd}: --metric {field}: not a results field (valid: {', '.join(valid)})",
              file=sys.stderr)
        sys.exit(2)


def read_spec(d):
    try:  # the sweep's copy of its YAML
        with open(os.path.join(d, "sweep.yaml")) as f:
            return f.read()
    except OSError:
        return ""


def param_distributions(spec):
    """{parameter (dashed): its distribution, or 'values' for a list} from a sweep file."""
    out = {}
    try:
        import yaml
        params = (yaml.safe_load(spec) or {}).get("parameters") or {}
        items = [(k, v) for k, v in params.items() if isinstance(v, dict)]
        text = {k: (v.get("distribution") or ("values" if "values" in v or "value" in v else "uniform"))
                for k, v in items}
    except ImportError:  # no PyYAML: the flow style kiln's examples use
        text = {}
        for m in re.finditer(r"^\s+([\w.-]+):\s*\{(.*)\}\s*$", spec, re.M):
            d = re.search(r"\bdistribution:\s*([\w-]+)", m.group(2))
            text[m.group(1)] = d.group(1) if d else ("values" if "value" in m.group(2) else "uniform")
    except Exception:  # noqa: BLE001  (a file the sweep would refuse: fall back to the span rule)
        text = {}
    for k, v in text.items():
        out[str(k).replace("_", "-")] = str(v)
        out[str(k)] = str(v)
    return out


def log_axis(p, dists, values):
    """Log scale for a log_uniform parameter (in any of the sweeps), linear for a uniform one,
    and for a list of values log where they span >= 2 decades."""
    pos = [v for v in values if v is not None]
    if not pos or min(pos) <= 0:
        return False
    kinds = {d.get(p) for d in dists} - {None}
    if any(k.startswith("log") for k in kinds):
        return True
    if kinds & {"uniform", "int_uniform"}:
        return False
    return max(pos) / min(pos) >= 100


def classify(recs, field):
    """(ok, pruned, failed) trials: ok ones scored (finite field), the rest by status."""
    ok = [r for r in recs if score(r, field) is not None]
    pruned = [r for r in recs if r.get("status") == "pruned"]
    failed = [r for r in recs if r not in ok and r not in pruned]
    return ok, pruned, failed


def sweep(args):
    sweeps = []
    for d in args.dirs:
        recs = [r for r in read_jsonl(os.path.join(d, "results.jsonl")) if isinstance(r.get("params"), dict)]
        if not recs:
            sys.exit(f"plot.py: {d}/results.jsonl: no results")
        spec = read_spec(d)
        sweeps.append(dict(name=os.path.basename(os.path.normpath(d)), dir=d, recs=recs,
                           dists=param_distributions(spec), goal=sweep_goal(spec)))
    # A/grid and B/grid: named 'A/grid' and 'B/grid' in the titles and the legend
    names = [dict(label=s["name"], path=os.path.normpath(s["dir"])) for s in sweeps]
    distinct_labels(names)
    for s, n in zip(sweeps, names):
        s["name"] = n["label"]
    # The parameters every directory swept (a grid over seeds next to random sweeps without a
    # seed parameter: plot lr and momentum, say what is left out). A seed is no hyperparameter.
    shared = [p for p in sweeps[0]["recs"][0]["params"] if all(p in s["recs"][0]["params"] for s in sweeps)]
    left_out = sorted({p for s in sweeps for p in s["recs"][0]["params"]} - set(shared))
    if not shared:
        sys.exit("plot.py: sweep: the directories share no parameter")
    if left_out:
        note(f"sweep: not in every directory, left out: {', '.join(left_out)}")
    params = [p for p in shared if p != "seed"] or shared
    if "seed" in shared and params != ["seed"]:
        note("sweep: seed is not a hyperparameter: the trials of every seed are pooled (plot.py seeds "
             "DIR compares them)")
    field, label, maximize = sweep_metric(args, sweeps)
    for s in sweeps:
        s["ok"], s["pruned"], s["failed"] = classify(s["recs"], field)
        s["imp"] = {p: importance(s["ok"], p, field) for p in params}
    numeric = {p: p != "seed" and all(as_float(r["params"].get(p)) is not None for s in sweeps for r in s["recs"])
               for p in params}
    ranked = sorted(params, key=lambda p: -mean_importance(sweeps, p))
    ncols = len(params) + (1 if len(params) >= 2 else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 4.0), squeeze=False)
    axes = axes[0]
    for j, p in enumerate(params):
        sweep_panel(axes[j], p, numeric[p], sweeps, field, maximize)
        axes[j].set_ylabel(f"{label} ({'higher' if maximize else 'lower'} is better)")
    sweep_legend(fig, sweeps, maximize)
    if len(params) >= 2:
        coverage_panel(axes[-1], sweeps, ranked[0], ranked[1], numeric)
    counts = "; ".join(f"{s['name']}: ok {len(s['ok'])}/{len(s['recs'])}" + not_ok(s) for s in sweeps)
    fig.suptitle(f"{args.title}\n{counts}" if args.title else counts, fontsize=10)
    fig.tight_layout()
    save(fig, args)


def not_ok(s):
    """' (7 pruned, 1 failed)' of a sweep, '' when every trial is ok."""
    parts = [f"{len(s[k])} {k}" for k in ("pruned", "failed") if s[k]]
    return f" ({', '.join(parts)})" if parts else ""


def sweep_metric(args, sweeps):
    """(results field, label, maximize): --metric, else the sweeps' own metric ('metric', what
    their importance tables rank), else when they rank by different ones the first's by name."""
    recs = [r for s in sweeps for r in s["recs"]]
    if args.metric and args.metric != "metric":
        check_metric("sweep", args.metric, recs)
        check_each_has("sweep", args.metric, sweeps)
        label, maximize = sweep_goal("", args.metric)
        return args.metric, label, maximize
    goals = {s["goal"] for s in sweeps}
    label, maximize = sweeps[0]["goal"]
    if len(goals) == 1:
        return "metric", label, maximize
    note("sweep: the directories rank by different metrics (" +
         ", ".join(f"{s['name']}: {s['goal'][0]}" for s in sweeps) + f"): plotting {label} of each")
    check_metric("sweep", label, recs)
    check_each_has("sweep", label, sweeps)
    return label, label, maximize


def check_each_has(cmd, field, sweeps):
    """Exit 2 when a directory's finished trials never record `field` (a sweep without a
    validation split, plotted by val_acc): its good trials would be drawn as failed."""
    for s in sweeps:
        ok = [r for r in s["recs"] if r.get("status") == "ok"]
        if ok and not any(as_float(r.get(field)) is not None for r in ok):
            print(f"plot.py: {cmd}: {s['dir']}: no finished trial records {field} (it ranks by "
                  f"{s['goal'][0]}): plot it alone, or pass --metric a field every directory has",
                  file=sys.stderr)
            sys.exit(2)


def importance(ok, p, field):
    """(explained, chance, trials) of one directory's ok trials, as its importance table."""
    vals = [r["params"].get(p) for r in ok]
    fv = [as_float(v) for v in vals]
    numeric = all(v is not None for v in fv)
    xs = fv if numeric else vals
    return explained(xs, [float(r[field]) for r in ok], numeric), chance(xs, numeric), len(ok)


def mean_importance(sweeps, p):
    e = [s["imp"][p][0] for s in sweeps if math.isfinite(s["imp"][p][0])]
    return sum(e) / len(e) if e else -1.0


def importance_title(p, sweeps):
    if p == "seed":
        return "seed (not a hyperparameter: no importance)"
    parts = []
    for s in sweeps:
        e, ch, n = s["imp"][p]
        name = f"{s['name']} " if len(sweeps) > 1 else ""
        if not math.isfinite(e):
            parts.append(f"{name}-")
            continue
        few = ", few trials" if ch >= 0.25 else ""  # noise alone would explain a quarter
        parts.append(f"{name}{e:.3f} (chance {ch:.2f}, n={n}{few})")
    return f"{p}: explained " + ("".join("\n" + t for t in parts) if len(sweeps) > 1 else parts[0])


def sweep_panel(ax, p, numeric, sweeps, field, maximize):
    """Metric vs one parameter: ok trials filled, pruned hollow (their score when they stopped),
    failed ones as a red x at the worst edge (bottom when higher is better) at their parameter value."""
    cats = sorted({r["params"][p] for s in sweeps for r in s["recs"]}) if not numeric else None

    def x(r):
        return as_float(r["params"][p]) if numeric else cats.index(r["params"][p])

    for k, s in enumerate(sweeps):
        c, m = f"C{k}", "os^D"[k % 4]
        ax.scatter([x(r) for r in s["ok"]], [float(r[field]) for r in s["ok"]], s=18, alpha=0.8, color=c, marker=m)
        scored = [r for r in s["pruned"] if as_float(r.get(field)) is not None]
        ax.scatter([x(r) for r in scored], [float(r[field]) for r in scored], s=22, facecolors="none",
                   edgecolors=c, marker=m)
        edge_marks(ax, [x(r) for r in s["failed"] + [r for r in s["pruned"] if r not in scored]],
                   0 if maximize else 1, **FAILED)
    if numeric:
        vals = [as_float(r["params"][p]) for s in sweeps for r in s["recs"]]
        if log_axis(p, [s["dists"] for s in sweeps], vals):
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels(cats, rotation=30, fontsize=8)
    ax.set_title(importance_title(p, sweeps), fontsize=8)
    ax.set_xlabel(p + (" (log scale)" if ax.get_xscale() == "log" else ""))
    ax.grid(alpha=0.3)


def sweep_legend(fig, sweeps, maximize):
    """One legend for every panel, outside them (no corner of a panel is free of trials)."""
    handles = [Line2D([], [], color=f"C{k}", marker="os^D"[k % 4], ls="none",
                      label=(f"{s['name']}: " if len(sweeps) > 1 else "") + f"ok {len(s['ok'])}/{len(s['recs'])}")
               for k, s in enumerate(sweeps)]
    if any(s["pruned"] for s in sweeps):
        handles.append(Line2D([], [], color="0.3", marker="o", mfc="none", ls="none",
                              label="pruned (score when it stopped)"))
    if any(s["failed"] for s in sweeps):
        handles.append(Line2D([], [], label=f"failed/diverged (at the {'bottom' if maximize else 'top'}: the worst end)",
                              **FAILED))
    fig.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 0.9))


def coverage_panel(ax, sweeps, px, py, numeric):
    def coord(r, p):
        v = r["params"][p]
        return as_float(v) if numeric[p] else v

    for k, s in enumerate(sweeps):
        ax.scatter([coord(r, px) for r in s["recs"]], [coord(r, py) for r in s["recs"]],
                   s=22, alpha=0.8, color=f"C{k}", marker="os^D"[k % 4])
        if s["failed"]:
            ax.plot([coord(r, px) for r in s["failed"]], [coord(r, py) for r in s["failed"]], **FAILED)
    dists = [s["dists"] for s in sweeps]
    for p, setter in ((px, ax.set_xscale), (py, ax.set_yscale)):
        if numeric[p] and log_axis(p, dists, [as_float(r["params"][p]) for s in sweeps for r in s["recs"]]):
            setter("log")
    ax.set_xlabel(px)
    ax.set_ylabel(py)
    ax.set_title("coverage of the two most important parameters" +
                 ("\n(every trial; red x: failed)" if any(s["failed"] for s in sweeps) else ""), fontsize=9)
    ax.grid(alpha=0.3)


def sweep_goal(spec, metric_arg=None):
    """(label, maximize) for ranking a sweep's configurations: the metric named on the command
    line (ranked by its own kind), else the sweep file's metric and goal (spec_metric)."""
    if metric_arg and metric_arg != "metric":
        return metric_arg, "acc" in metric_arg
    return spec_metric(spec)


def seeds(args):
    recs = [r for r in read_jsonl(os.path.join(args.dir, "results.jsonl")) if isinstance(r.get("params"), dict)]
    if not recs:
        sys.exit(f"plot.py: {args.dir}/results.jsonl: no results")
    if "seed" not in recs[0]["params"]:
        sys.exit(f"plot.py: seeds: {args.dir} has no 'seed' parameter (add seed: {{values: [0, 1, 2]}} to the sweep)")
    metric = args.metric or "metric"
    check_metric("seeds", metric, recs)
    label, maximize = sweep_goal(read_spec(args.dir), args.metric)
    names = [k for k in recs[0]["params"] if k != "seed"]
    repeats = []  # a random sweep's repeated draws: the same run again, counted once (seed_groups)
    groups = seed_groups(sorted(recs, key=lambda r: r["trial"] if isinstance(r.get("trial"), int) else 0), repeats)
    configs, by_seed, failed, pruned = {}, {}, {}, {}
    for key, rs in groups.items():  # key: (name, value) pairs, exact values (%.3g only on the ticks)
        configs[key] = []
        for r in rs:
            v = as_float(r.get(metric))
            if r.get("status") == "ok" and v is not None:
                configs[key].append(v)
                by_seed.setdefault(r["params"]["seed"], {})[key] = v
            elif r.get("status") == "pruned" and v is not None:
                pruned.setdefault(key, []).append(v)
            else:
                failed[key] = failed.get(key, 0) + 1

    order = sorted(configs, key=lambda k: (not configs[k], mean_std(configs[k])[0] * (-1 if maximize else 1)))
    x = {k: i for i, k in enumerate(order)}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(order) + 1.5), 4.6))
    for j, (seed, vals) in enumerate(sorted(by_seed.items(), key=lambda kv: str(kv[0]))):
        pts = sorted((x[k], v) for k, v in vals.items())
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{j % 10}", alpha=0.55, lw=1, ms=4,
                label=f"seed {seed}")
    seeds_marks(ax, order, x, configs, failed, pruned, maximize)
    ax.set_xticks(range(len(order)))
    total = {k: len(configs[k]) + failed.get(k, 0) + len(pruned.get(k, [])) for k in order}
    ticks = ["\n".join(seeds_tick(n, v) for n, v in k) or "(one configuration)" for k in order]
    ax.set_xticklabels([f"{t}\n{len(configs[k])}/{total[k]} ok" for t, k in zip(ticks, order)], fontsize=7)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.set_xlabel(f"configuration ({', '.join(names) or 'seed only'}), best mean first", fontsize=8)
    ax.set_ylabel(f"{label} ({'higher' if maximize else 'lower'} is better)")
    n_ok = sum(len(v) for v in configs.values())
    if repeats:
        note(f"seeds: {len(repeats)} trial(s) repeat an earlier trial's configuration and seed, the same run again: "
             "counted once, by the first")
    ax.set_title(args.title or f"{os.path.basename(os.path.normpath(args.dir))}: {label} over seeds "
                 f"(ok {n_ok}/{len(recs) - len(repeats)})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, args)


def seeds_tick(name, value):
    """A configuration's "name=value" tick line; a long one (a grouped parameter's value is
    "a=x b=y") on lines of at most 15 characters, the name on its own, so neighbouring ticks do
    not run together."""
    t = f"{name}={fmt(value)}"
    return t if len(t) <= 15 else f"{name}=\n" + textwrap.fill(fmt(value), 15)


def seeds_marks(ax, order, x, configs, failed, pruned, maximize):
    """Per configuration: mean +- std of its ok seeds (the mean alone from one), pruned seeds
    hollow, failed ones as red x's at the worst edge (bottom when higher is better)."""
    one = False
    for k in order:
        m, sd = mean_std(configs[k])
        if len(configs[k]) >= 2:
            ax.errorbar([x[k]], [m], yerr=[sd], fmt="_", color="black", ms=18, capsize=4, lw=1.5)
        elif configs[k]:
            ax.plot([x[k]], [m], "_", color="black", ms=18, mew=1.5)
            one = True
        if pruned.get(k):
            ax.plot([x[k]] * len(pruned[k]), pruned[k], "o", mfc="none", color="0.3", ms=5)
        nf = failed.get(k, 0)
        edge_marks(ax, [x[k] + 0.08 * (i - (nf - 1) / 2) for i in range(nf)], 0 if maximize else 1, **FAILED)
    ax.errorbar([], [], yerr=[], fmt="_", color="black", label="mean +- std (>= 2 ok seeds)")
    if one:
        ax.plot([], [], "_", color="black", ms=12, mew=1.5, label="one ok seed: mean only, no error bar")
    if any(pruned.values()):
        ax.plot([], [], "o", mfc="none", color="0.3", label="pruned (score when it stopped)")
    if any(failed.values()):
        ax.plot([], [], label=f"failed/diverged (at the {'bottom' if maximize else 'top'}: the worst end)", **FAILED)


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
    if NO_MATPLOTLIB:
        sys.exit(NO_MATPLOTLIB)
    try:
        {"lr-find": lr_find, "curves": curves, "sweep": sweep, "seeds": seeds}[args.cmd](args)
    except (OSError, KeyError, ValueError, TypeError) as e:  # TypeError: a field of the wrong type
        sys.exit(f"plot.py: {args.cmd}: {e}")
    print(f"wrote {output_path(args.output)}")


if __name__ == "__main__":
    main()
