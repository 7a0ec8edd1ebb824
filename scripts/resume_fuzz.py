#!/usr/bin/env python3
"""Randomized resume equivalence: a run resumed from any of its own checkpoints ends as the
uninterrupted run does.

Each recipe is drawn from the options a tuning run combines (optimizers, every kind of
schedule, warm-up, a validation split with early stopping, --restore-best and --target-acc,
batch schedules, clipping, penalties, norms, dropout, mlp and cnn). The recipe runs once
uninterrupted, writing a checkpoint every few steps and at every epoch's end, then again from
some of those checkpoints and from its final --save with `--resume` alone (the checkpoint
supplies the recipe). Every resumed run must end with the same tensors (bytes, dtype, shape),
the same epoch/batch/step and restored_epoch, and print the same final test line; every record
its --log JSONL holds (epoch, early_stop, restore_best) must be the uninterrupted run's record of
that type and epoch, timings aside, and its epoch records must be the uninterrupted run's from
the checkpoint's epoch on, in order, none missing or repeated.

    scripts/resume_fuzz.py --bin build-cpu/train_mnist --data tests/data [--recipes N] [--seed S]

Exit 0 when every resume matched, 1 at the first mismatch (its two command lines printed),
2 for a bad argument. Fixed seeds give the same recipes: the ctest (cli.resume_fuzz) runs 20
recipes x 3 resumes; run more by hand with other seeds (a session's 16,000 resumes found the
--target-acc defect that TrainerCpu.ARunTargetAccStopsKeepsThatEpochsWeightsUnderRestoreBest
now covers).
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

from safetensors_file import read_safetensors


def differences(a_path, b_path):
    (a, ma), (b, mb) = read_safetensors(a_path), read_safetensors(b_path)
    ma, mb = ({k: m.get(k) for k in ('epoch', 'batch', 'step', 'restored_epoch')} for m in (ma, mb))
    out = ['tensor %s' % k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    out += ['metadata %s: %s vs %s' % (k, ma[k], mb[k]) for k in ma if ma[k] != mb[k]]
    return out


TIMINGS = ('seconds', 'images_per_s')


def log_differences(a_path, b_path, first_epoch):
    """Records of the resumed run's log that the uninterrupted run's log lacks (timings aside),
    and whether its epoch records are the uninterrupted run's from `first_epoch` (1-based) on,
    in order, none missing or repeated."""
    def records(path):
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]
    a = records(a_path)
    b = records(b_path)
    want = [r['epoch'] for r in a if r.get('type') == 'epoch' and r['epoch'] >= first_epoch]
    got = [r['epoch'] for r in b if r.get('type') == 'epoch']
    out = [] if got == want else ['log epoch records %s, the uninterrupted run has %s' % (got, want)]
    for r in b:
        if r in a:
            continue
        twin = [x for x in a if x.get('type') == r.get('type') and x.get('epoch') == r.get('epoch')]
        where = 'log %s record of epoch %s' % (r.get('type'), r.get('epoch'))
        if not twin:
            out.append(where + ': not in the uninterrupted run\'s log')
            continue
        out += ['%s: %s %s vs %s' % (where, k, twin[0].get(k), r.get(k))
                for k in sorted(set(r) | set(twin[0])) if r.get(k) != twin[0].get(k)]
    return out


def draw(rng):
    """One recipe: a list of train_mnist options (valid by construction)."""
    cnn = rng.random() < 0.25
    o = ['--epochs', str(rng.randint(2, 4)), '--batch-size', str(rng.choice([16, 24, 32, 48])),
         '--test-limit', '100', '--seed', str(rng.randint(0, 999))]
    if cnn:
        o += ['--model', 'cnn', '--pool-after', str(rng.randint(0, 7)),
              '--train-limit', str(rng.randint(96, 192))]
    else:
        o += ['--model', 'mlp', '--width', str(rng.choice([8, 16, 24])), '--depth',
              str(rng.randint(1, 2)), '--train-limit', str(rng.randint(200, 480))]
    norm = rng.choice(['none', 'none', 'batch', 'group'])
    if norm != 'none':
        o += ['--norm', norm, '--norm-position', rng.choice(['before', 'after'])]
    if rng.random() < 0.4:
        o += ['--dropout', str(rng.choice([0.1, 0.3]))]
        if cnn and rng.random() < 0.5:
            o += ['--dropout-kind', 'channel']
    opt = rng.choice(['sgd', 'sgd', 'adam', 'adamw', 'rmsprop'])
    o += ['--optimizer', opt]
    if opt == 'sgd':
        o += ['--lr', str(rng.choice([0.01, 0.03, 0.1]))]
        if rng.random() < 0.7:
            o += ['--momentum', '0.9'] + (['--nesterov'] if rng.random() < 0.5 else [])
    else:
        o += ['--lr', str(rng.choice([0.001, 0.003]))]
        if opt == 'rmsprop' and rng.random() < 0.5:
            o += ['--momentum', '0.5']
    sched = rng.choice(['constant', 'step', 'multistep', 'exponential', 'inverse-time',
                        'inverse-sqrt-step', 'cosine', 'cosine-restarts', 'cyclic', 'one-cycle',
                        'plateau'])
    o += ['--schedule', sched]
    o += {'step': ['--step-size', '1', '--gamma', '0.5'],
          'multistep': ['--milestones', '1,2', '--gamma', '0.5'],
          'exponential': ['--gamma', '0.9'],
          'inverse-time': ['--decay', '0.5'],
          'cosine-restarts': ['--t-max', '1'],
          'cyclic': ['--step-size-up', '3', '--cyclic-mode',
                     rng.choice(['triangular', 'triangular2', 'exp_range'])],
          'plateau': ['--patience', '0', '--factor', '0.5', '--plateau-mode',
                      rng.choice(['min', 'max'])]}.get(sched, [])
    if sched != 'one-cycle' and rng.random() < 0.3:
        o += ['--warmup-steps', '5']
    if rng.random() < 0.5:
        o += ['--val-split', '0.2']
    if rng.random() < 0.5:
        o += ['--early-stop', str(rng.randint(1, 2)), '--early-stop-metric',
              rng.choice(['loss', 'acc'])]
        if rng.random() < 0.6:
            o += ['--restore-best']
    if rng.random() < 0.3:
        o += ['--target-acc', str(rng.choice([0.3, 0.5, 0.7]))]
    if rng.random() < 0.2:
        o += ['--batch-schedule', '0:32,1:16'] + (['--scale-lr'] if rng.random() < 0.5 else [])
    o += rng.choice([[], [], ['--clipnorm', '1'], ['--global-clipnorm', '1'],
                     ['--clipvalue', '0.5']])
    if rng.random() < 0.3:
        o += ['--l2', '0.0001']
    if rng.random() < 0.2:
        o += ['--no-shuffle']
    return o


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--bin', required=True, help='the train_mnist binary')
    ap.add_argument('--data', required=True, help='a --data-dir holding mnist/')
    ap.add_argument('--recipes', type=int, default=20)
    ap.add_argument('--resumes', type=int, default=2, help='checkpoints resumed per recipe')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--keep', help='work in this directory and keep it (default: a temporary one)')
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK) or args.recipes < 1 or args.resumes < 0:
        ap.error('need an executable --bin, --recipes >= 1 and --resumes >= 0')
    work = args.keep or tempfile.mkdtemp(prefix='kiln_resume_fuzz_')
    os.makedirs(work, exist_ok=True)
    rng = random.Random(args.seed)
    data = ['--data-dir', os.path.abspath(args.data), '--threads', '1']

    def train(extra, cwd):
        p = subprocess.run([os.path.abspath(args.bin)] + data + extra, cwd=cwd,
                           capture_output=True, text=True, timeout=600)
        last = [l for l in p.stdout.splitlines() if l.startswith('test_acc=')]
        line = last[-1].split(' seconds=')[0] if last else None
        return p.returncode, line, (p.stderr.strip().splitlines() or [''])[-1]

    counts = {'recipes': 0, 'resumes': 0, 'diverged': 0}
    try:
        for i in range(args.recipes):
            recipe = draw(rng)
            d = os.path.join(work, 'r%03d' % i)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            k = rng.randint(2, 7)
            whole = recipe + ['--checkpoint-dir', 'ck', '--checkpoint-every', '1',
                              '--checkpoint-every-steps', str(k), '--save', 'A.safetensors',
                              '--log', 'A.jsonl']
            rc, line_a, err = train(whole, d)
            if rc == 3:  # diverged: nothing to resume to the end
                counts['diverged'] += 1
                continue
            if rc != 0:
                print('FAIL: recipe %d exited %d: %s\n  train_mnist %s' % (i, rc, err,
                                                                           ' '.join(whole)))
                return 1
            counts['recipes'] += 1
            points = sorted(os.path.join('ck', f) for f in os.listdir(os.path.join(d, 'ck')))
            points.append('A.safetensors')
            for j, start in enumerate(rng.sample(points, min(args.resumes, len(points)))):
                out, log = 'B%d.safetensors' % j, 'B%d.jsonl' % j
                resumed = ['--resume', start, '--save', out, '--log', log]
                rc, line_b, err = train(resumed, d)
                # the resumed run's first epoch record is that of the epoch after the
                # checkpoint's position (epoch: finished epochs, or the one in progress)
                first = int(read_safetensors(os.path.join(d, start))[1]['epoch']) + 1
                diff = ['exit %d: %s' % (rc, err)] if rc != 0 else differences(
                    os.path.join(d, 'A.safetensors'), os.path.join(d, out)) + log_differences(
                    os.path.join(d, 'A.jsonl'), os.path.join(d, log), first)
                if rc == 0 and line_b != line_a:
                    diff.append('final line %r vs %r' % (line_a, line_b))
                if diff:
                    print('FAIL: recipe %d resumed from %s differs: %s\n  train_mnist %s\n'
                          '  train_mnist %s' % (i, start, '; '.join(diff[:6]), ' '.join(whole),
                                                ' '.join(resumed)))
                    return 1
                counts['resumes'] += 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print('%(recipes)d recipes, %(resumes)d resumes, all identical to the uninterrupted runs '
          '(%(diverged)d recipes diverged and were skipped)' % counts)
    return 0


if __name__ == '__main__':
    sys.exit(main())
