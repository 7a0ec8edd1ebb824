#!/usr/bin/env python3
"""The numbers the issues ask of the kernel benchmarks, from the bench_*.json files (Google
Benchmark JSON) that run.sh bench writes into one directory:

  ceilings  copy bandwidth, SGEMM fp32 / tf32 rates
  conv      per model and batch: kiln / cuDNN time summed over the net's layers for forward,
            backward-data, backward-filter and all three (issue 3: within 1.5x, goal 1.2x), over
            the layers timed on both sides (those on one side only are named); the worst layer;
            1x1 kiln / cuBLAS; fused / separate ReLU
  pool, norm, dropout   achieved GB/s as a fraction of the copy bandwidth (issues 3, 4, 8)
  optim     fused step: measured time / bandwidth floor, launches per step (issue 5); by kind and
            parameter count, names without /<kind>/<params> last
  linear    kiln / cuBLAS

With --benchmark_repetitions the median aggregate is used, else the single run. A family whose
JSON is missing, cut short or not Google Benchmark JSON is reported as such. Usage: bench_summary.py DIR
"""
import json
import math
import os
import re
import sys


MISSING = {}  # family -> why it has no rows: "no bench_X.json", or why the file is unreadable


def load(d, name):
    """{benchmark name without /manual_time: row}, medians preferred; None (and MISSING[name]
    says why) when the file is missing or not Google Benchmark JSON."""
    path = os.path.join(d, name + ".json")
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        MISSING[name] = f"no {name}.json"
        return None
    except (OSError, ValueError) as e:  # a benchmark killed mid-write leaves a cut file
        MISSING[name] = f"{name}.json is unreadable ({getattr(e, 'strerror', None) or e})"
        return None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        MISSING[name] = f"{name}.json is not Google Benchmark JSON (no 'benchmarks' list)"
        return None
    return rows_of(data)


def rows_of(data):
    """{benchmark name without /manual_time: row} of a Google Benchmark JSON object, the median
    aggregate preferred (bench_table.py reads bench_train's rows through this too)."""
    rows, medians = {}, {}
    for b in data["benchmarks"]:
        if not isinstance(b, dict) or "name" not in b or b.get("error_occurred"):
            continue
        key = re.sub(r"/manual_time.*$|/iterations:\d+", "", b.get("run_name", b["name"]))
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = b
        else:
            rows.setdefault(key, b)
    rows.update(medians)
    return rows


def geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def fmt(x, spec=".2f"):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def table(title, header, rows):
    if not rows:
        return title + "\n  (no results)\n"
    out = [title]
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    out.append("  " + "  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        out.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(out) + "\n"


def ceilings(d):
    rows = load(d, "bench_ceilings")
    if rows is None:
        return "ceilings: " + MISSING["bench_ceilings"] + "\n"
    get = lambda k, c: rows.get(k, {}).get(c)
    return table("ceilings", ["copy GB/s", "SGEMM fp32 GFLOP/s", "SGEMM tf32 GFLOP/s"],
                 [[fmt(get("BM_CopyBandwidth", "GB/s"), ".0f"), fmt(get("BM_SgemmPeak/0", "GFLOP/s"), ".0f"),
                   fmt(get("BM_SgemmPeak/1", "GFLOP/s"), ".0f")]])


def conv(d):
    rows = load(d, "bench_conv")
    if rows is None:
        return "conv: " + MISSING["bench_conv"] + "\n"
    # conv/<model>.<layer>/<shape>/b<batch>/<op>/<impl>
    t = {}
    for k, r in rows.items():
        m = re.match(r"conv/(\w+)\.(\w+)/([^/]+)/b(\d+)/([\w+]+)/(\w+)$", k)
        if m:
            model, layer, shape, batch, op, impl = m.groups()
            t[(model, int(batch), f"{layer} {shape}", op, impl)] = r
    out = []
    groups = sorted({(k[0], k[1]) for k in t})
    summary, worst_rows, partial = [], [], []
    for model, batch in groups:
        layers = sorted({k[2] for k in t if k[:2] == (model, batch)})
        cells = [f"{model} b{batch}"]
        for op in ("fwd", "bwd_data", "bwd_filter", "fwd+bwd"):
            # only the layers timed on both sides (a row missing or with error_occurred on one side
            # would weigh the other side's layers against nothing); the rest are named below
            kilns = {l: [t[(model, batch, l, op, i)]["real_time"] for i in ("kiln", "kiln_1x1")
                         if (model, batch, l, op, i) in t] for l in layers}
            cudnn = {l for l in layers if (model, batch, l, op, "cudnn") in t}
            both = [l for l in layers if kilns[l] and l in cudnn]
            one = [l for l in layers if l not in both and (kilns[l] or l in cudnn)]
            # a build without cuDNN has no cudnn rows at all: '-', nothing to name
            if one and any(kilns.values()) and cudnn:
                partial.append(f"{model} b{batch} {op}: " + ", ".join(
                    f"{l} ({'no cuDNN' if kilns[l] else 'no kiln'} row)" for l in one))
            kiln = sum(x for l in both for x in kilns[l])
            base = sum(t[(model, batch, l, op, "cudnn")]["real_time"] for l in both)
            cells.append(fmt(kiln / base if base else float("nan")))
        step = [(t[(model, batch, l, "fwd+bwd", i)].get("kiln/cuDNN"), l) for l in layers for i in ("kiln", "kiln_1x1")
                if (model, batch, l, "fwd+bwd", i) in t]
        step = [s for s in step if s[0] is not None]
        if step:
            w = max(step)
            worst_rows.append([f"{model} b{batch}", w[1], fmt(w[0])])
        cublas = [t[k].get("kiln/cuBLAS") for k in t if k[:2] == (model, batch) and k[4] == "kiln_1x1"]
        # fwd+bwd rows only: the fused backward runs the separate path's kernels (about 1.0)
        fused = [t[k].get("fused/separate") for k in t
                 if k[:2] == (model, batch) and k[3] == "fwd+bwd" and k[4] == "kiln_relu_fused"]
        tiles = [t[k].get("tiles_auto/small") for k in t
                 if k[:2] == (model, batch) and k[3] == "fwd+bwd" and k[4] in ("kiln", "kiln_1x1")]
        cells += [fmt(geomean(cublas)), fmt(geomean(fused)), fmt(geomean(tiles))]
        summary.append(cells)
    out.append(table("conv: kiln / cuDNN, time summed over the net's conv layers (1.0 = parity; issue 3: <= 1.5)",
                     ["model", "fwd", "bwd_data", "bwd_filter", "fwd+bwd", "1x1 kiln/cuBLAS", "fused/separate ReLU",
                      "tiles auto/small"],
                     summary))
    if partial:
        out.append("conv: layers left out of those sums, timed on one side only (missing or error_occurred)\n"
                   + "".join(f"  {p}\n" for p in partial))
    out.append(table("conv: the layer with the worst fwd+bwd ratio", ["model", "layer", "kiln/cuDNN"], worst_rows))
    return "\n".join(out)


def bandwidth(d, name, title, frac_keys=("frac_copy", "of_copy_bw")):
    rows = load(d, name)
    if rows is None:
        return f"{title}: {MISSING[name]}\n"
    out = []
    for k in sorted(rows):
        r = rows[k]
        frac = next((r[f] for f in frac_keys if f in r), None)
        out.append([k, fmt(r.get("GB/s"), ".0f"), fmt(frac)])
    return table(f"{title}: achieved GB/s and fraction of the copy bandwidth (issue 4: >= 0.70, goal 0.85)",
                 ["benchmark", "GB/s", "of copy"], out)


UNIT_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def micros(row):
    t = row.get("real_time")
    return t * UNIT_US.get(row.get("time_unit", "us"), float("nan")) if t else None


def variants(d, name, title):
    """Rows that run the default's case another way: a name with one lowercase path part more
    than another row's (BM_X/persistent/64/64/56/56 against BM_X/64/64/56/56,
    pool/.../maxpool_fwd/index64 against pool/.../maxpool_fwd), timed against that row (in us).
    A persistent row whose persistent_grid is 0 ran the default's kernels: marked, not compared."""
    rows = load(d, name)
    if rows is None:
        return ""
    out = []
    for k in sorted(rows):
        parts = k.split("/")
        for i in range(1, len(parts)):
            if not re.fullmatch(r"[a-z][a-z0-9_]*", parts[i]):
                continue
            base = "/".join(parts[:i] + parts[i + 1:])
            if base not in rows:
                continue
            t, tb = micros(rows[k]), micros(rows[base])
            if rows[k].get("persistent_grid", 1) == 0:
                out.append([base, parts[i], fmt(tb), fmt(t), "(not taken)"])
            else:
                out.append([base, parts[i], fmt(tb), fmt(t), fmt(t / tb if t and tb else None)])
            break
    if not out:
        return ""
    return table(f"{title}: each variant's time over the default's (< 1: the variant is faster)",
                 ["benchmark", "variant", "default us", "variant us", "variant/default"], out)


def optim(d):
    rows = load(d, "bench_optim")
    if rows is None:
        return "optim: " + MISSING["bench_optim"] + "\n"
    out = []
    def order(k):  # by kind, then parameter count; a name without /<kind>/<params> last, by name
        p = k.split("/")
        return (0, p[1], int(p[2])) if len(p) > 2 and p[2].isdigit() else (1, k)
    for k in sorted(rows, key=order):
        r = rows[k]
        ff = r.get("floor_frac")
        out.append([k, fmt(r.get("GB/s"), ".0f"), fmt(1 / ff if ff else None), fmt(r.get("launches_per_step"), ".1f")])
    return table("optim: fused step, time / bandwidth floor (issue 5: <= 1.3 at 100M; issue 8: <= 1.2) and launches",
                 ["benchmark (kind/params/tensors)", "GB/s", "time/floor", "launches/step"], out)


def linear(d):
    rows = load(d, "bench_linear")
    if rows is None:
        return "linear: " + MISSING["bench_linear"] + "\n"
    out = []
    for k in sorted(rows):
        m = re.match(r"BM_Linear(Fwd|Bwd)/(.*)$", k)
        if not m:
            continue
        base = rows.get(f"BM_Cublas{m.group(1)}/{m.group(2)}")
        ratio = rows[k]["real_time"] / base["real_time"] if base else float("nan")
        out.append([k, fmt(rows[k].get("GFLOP/s"), ".0f"), fmt(ratio)])
    return table("linear: kiln / cuBLAS time", ["benchmark (batch/in/out)", "GFLOP/s", "kiln/cuBLAS"], out)


def main():
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: bench_summary.py DIR   (the directory with bench_*.json)")
    d = sys.argv[1]
    parts = [ceilings(d), conv(d), bandwidth(d, "bench_pool", "pool"), variants(d, "bench_pool", "pool"),
             bandwidth(d, "bench_norm", "norm"), variants(d, "bench_norm", "norm"),
             bandwidth(d, "bench_dropout", "dropout"), optim(d), linear(d)]
    print("\n".join(p for p in parts if p), end="")


if __name__ == "__main__":
    main()
