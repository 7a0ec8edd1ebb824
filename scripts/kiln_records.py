"""kiln's JSONL records as the scripts read them (plot.py, catalogue_report.py, catalogue.sh,
bench_table.py): one reader for any JSONL file, and a sweep's metric, its trials' scores and
its over-seeds groups as `sweep --report` forms them (tuning/sweep.cpp seed_groups): trials
that differ only in the seed form a setting; a trial that repeats an earlier trial's setting
and seed (a random sweep's draw) is the same run again, counted once, by the first; a
setting's score is the mean +- sample standard deviation over its seeds that finished.
"""
import json
import math
import re
import statistics


def read_jsonl(path):
    """(the JSON objects of a JSONL file, how many lines were unreadable). A line that is not
    JSON (a torn last line from a killed writer, which the sweep skips and seals with a newline)
    or not an object is skipped and counted; blank lines are not counted. Bytes that are not
    UTF-8 (a line cut inside a character) are replaced, not fatal. OSError when the file cannot
    be read."""
    out, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(r, dict):
                out.append(r)
            else:
                bad += 1
    return out, bad


def as_float(s):
    """A number or numeric text as a finite float, else None."""
    try:
        v = float(s)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


def score(r, field="metric"):
    """A trial's `field` as a finite float when it finished (status ok), else None: a failed or
    pruned trial, or one without the field, has no score to rank or average (as the sweep)."""
    return as_float(r.get(field)) if r.get("status") == "ok" else None


def spec_metric(spec):
    """(name, maximize) of a sweep file's metric, as the sweep ranks by it: the file as YAML
    (flow or block style), else by pattern where YAML cannot read it (metric_by_pattern); the
    name test_acc by default, and without a goal the accuracies maximized and the losses
    minimized (docs/FORMATS.md)."""
    metric = None
    try:  # PyYAML, where installed
        import yaml
        doc = yaml.safe_load(spec)
        metric = doc.get("metric") if isinstance(doc, dict) else None
    except ImportError:  # no PyYAML: the patterns below
        pass
    except yaml.YAMLError:  # one kiln's sweep reads (a tab before a comment) or a copy cut mid-write
        pass
    if isinstance(metric, str):  # metric: test_acc (the name alone)
        metric = {"name": metric}
    if not isinstance(metric, dict):
        metric = metric_by_pattern(spec)
    name, goal = metric.get("name"), metric.get("goal")
    name = str(name) if name else "test_acc"
    return name, goal == "maximize" if goal else "acc" in name


def metric_by_pattern(spec):
    """{'name', 'goal'} of a sweep file's metric by pattern, where YAML cannot read the file:
    flow ({name: x, goal: y}, also over several lines), block (indented lines under metric:) or
    the name alone. Comments (a '#' at a line's start or after a blank) and blank lines are
    dropped first: 'name: val_acc  # not name: test_loss' names val_acc, and a blank line
    inside the block does not end it."""
    lines = [re.sub(r"(^|[ \t])#.*$", "", line).rstrip() for line in spec.splitlines()]
    text = "\n".join(line for line in lines if line.strip())
    plain = re.search(r"^metric:[ \t]*['\"]?(\w+)['\"]?$", text, re.M)
    if plain:
        return {"name": plain.group(1)}
    inline = re.search(r"^metric:[ \t]*\{([^}]*)", text, re.M)
    block = re.search(r"^metric:[ \t]*\n((?:[ \t]+\S.*(?:\n|$))+)", text, re.M)
    body = inline.group(1) if inline else block.group(1) if block else ""
    found = {}
    for key, value in re.findall(r"\b(name|goal)[ \t]*:[ \t]*['\"]?(\w+)", body):
        found.setdefault(key, value)  # the first, as YAML would refuse a repeated key
    return found


def seed_groups(recs, repeats=None):
    """Records by setting: every parameter but the seed, as (name, value text) pairs (the
    sweep's records hold each value as text), in the order of each setting's first record (recs
    in trial order: its first trial). A random sweep can draw a setting and seed again, the same
    run twice: only its first trial is kept (a second sample would shrink std and inflate the
    count), the later ones go to the list `repeats` where one is given."""
    groups, seen = {}, set()
    for r in recs:
        p = r.get("params", {})
        key = tuple((k, str(v)) for k, v in p.items() if k != "seed")
        if "seed" in p:
            if (key, str(p["seed"])) in seen:
                if repeats is not None:
                    repeats.append(r)
                continue
            seen.add((key, str(p["seed"])))
        groups.setdefault(key, []).append(r)
    return groups


def expected_seeds(spec, groups):
    """How many seeds a setting should have: the sweep file's seed values (flow or block style),
    else the most any setting has so far (groups: seed_groups' result)."""
    try:  # as YAML, where PyYAML is installed and reads the file
        import yaml
        seed = yaml.safe_load(spec)["parameters"]["seed"]["values"]
        if isinstance(seed, list):
            return len(seed)
    except Exception:  # noqa: BLE001 (no PyYAML, a file it cannot read, no seed values: the pattern)
        pass
    sv = re.search(r"^\s*seed:\s*\{?\s*values:\s*\[([^\]]*)\]", spec, re.M)  # flow, or a block of a flow list
    if sv:
        return len([v for v in sv.group(1).split(",") if v.strip()])
    return max(map(len, groups.values())) if groups else 0


def mean_std(vals):
    """(mean, sample standard deviation) of a setting's scores over its seeds: std 0 from one
    seed, (nan, 0) from none."""
    if not vals:
        return float("nan"), 0.0
    return statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0
