#!/usr/bin/env python3
"""Training parity with PyTorch: kiln (CPU, float32) and torch (float64) train the same model
from the same weights on the same batches with the same recipe, and after every optimizer step
kiln's weights, optimizer state, batch-norm running statistics, learning rate and momentum must
equal torch's.

    scripts/check_pytorch_training.py [--bin build-cpu] [--data-dir tests/data] [--only NAME]
                                      [--cifar-dir DIR] [--list] [--rtol 1e-4] [--kink-rtol 2e-2]
                                      [--free-run] [--keep DIR]

For each recipe below, kiln trains with --no-shuffle and a checkpoint after every optimizer step
(train_mnist --checkpoint-every-steps 1); its step-0 weights (--epochs 0 --save) and the exact
normalised training inputs (kiln_eval --split train) go to torch, which rebuilds the model
(scripts/torch_mirror.py) and builds the optimizer, parameter groups, penalties, clipping and LR
scheduler from the run's own config with torch.optim, torch.optim.lr_scheduler and
torch.nn.utils (the kiln-only schedules inverse-time and inverse-sqrt as LambdaLR from their
documented formulas; CyclicLR and OneCycleLR get only the arguments the recipe sets, so the
rest are torch's own defaults, which kiln's must equal; ReduceLROnPlateau steps with torch's own evaluation of the rows it
watches, the run's --val-split rows or else its test rows). Before each step torch takes kiln's state after the previous one (model
and optimizer tensors), so every step is compared on its own: in float64 torch gives the exact
step, and the difference is kiln's float32 rounding, not chaos amplified over steps
(--free-run shows that instead).

A tensor agrees when ||kiln - torch|| <= rtol * ||kiln|| (L2, so one ill-conditioned element,
an RMSprop/Adam update g/sqrt(v) of a cancellation-sized g, cannot fail a recipe while a wrong
formula, which moves every element, does); lr and momentum agree to 1e-6 relative on every
step; BN's num_batches_tracked exactly. A recipe passes when its median step is within rtol
and every step within --kink-rtol: when a ReLU or max-pool input lies within float32 rounding
of its kink (a few in every CNN step), kiln's float32 forward can land on the other side of it
than float64 and send one position's gradient elsewhere: a one-step event of up to ~1e-2 in
the layers below (seen: 2e-4 .. 6e-3), where a wrong formula shows on most steps. Biases of
a layer that feeds batch norm directly are not compared: their gradient is zero up to
rounding, and an adaptive optimizer turns that noise into +-lr steps in both frameworks with
unrelated signs. Dropout layers draw kiln's mask in torch too (scripts/torch_mirror.py
re-derives the counter hash of kernels/dropout/hash.h), so the comparison covers their scaling
and placement, not torch's generator. Exit 0 when every recipe agrees, 1 on a mismatch, 77 (skipped) when
torch is not installed.
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile

COMMON = ["--device", "cpu", "--dataset", "mnist", "--train-limit", "128", "--test-limit", "64",
          "--batch-size", "32", "--epochs", "2", "--no-shuffle", "--seed", "3", "--max-loss", "-1"]
MLP = ["--model", "mlp", "--width", "32", "--depth", "2"]
RECIPES = [
    ("sgd", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--schedule", "constant"]),
    ("sgd-momentum-dampening-wd-step", MLP + [
        "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--dampening", "0.1",
        "--weight-decay", "0.01", "--schedule", "step", "--step-size", "2", "--gamma", "0.5", "--epochs", "3"]),
    ("nesterov-decay-all-exponential", MLP + [
        "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--nesterov", "--weight-decay", "0.001",
        "--decay-all", "--schedule", "exponential", "--gamma", "0.95"]),
    ("adam-one-cycle-default", MLP + ["--optimizer", "adam", "--lr", "0.003", "--schedule", "one-cycle"]),
    ("adam-wd-multistep", MLP + ["--optimizer", "adam", "--lr", "0.001", "--weight-decay", "0.05",
                                 "--schedule", "multistep", "--milestones", "1", "--gamma", "0.3"]),
    # no --weight-decay: kiln's default must be torch.optim.AdamW's own (0.01)
    ("adamw-default-weight-decay", MLP + ["--optimizer", "adamw", "--lr", "0.01", "--schedule", "constant"]),
    ("adamw-cosine", MLP + ["--optimizer", "adamw", "--lr", "0.002", "--weight-decay", "0.1",
                            "--beta1", "0.8", "--beta2", "0.99", "--eps", "1e-3", "--schedule", "cosine",
                            "--eta-min", "1e-4"]),
    ("rmsprop-momentum-cosine-restarts", MLP + [
        "--optimizer", "rmsprop", "--lr", "0.001", "--alpha", "0.9", "--momentum", "0.5",
        "--weight-decay", "0.01", "--schedule", "cosine-restarts", "--t-max", "2", "--eta-min", "1e-5",
        "--epochs", "3"]),  # epoch 2 halfway down, epoch 3 restarted
    ("rmsprop-plain-inverse-time", MLP + ["--optimizer", "rmsprop", "--lr", "0.001",
                                          "--schedule", "inverse-time", "--decay", "0.5"]),
    ("sgd-cyclic-triangular2-momentum", MLP + [
        "--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--schedule", "cyclic",
        "--base-lr", "0.01", "--max-lr", "0.1", "--step-size-up", "3", "--cyclic-mode", "triangular2"]),
    ("sgd-cyclic-exp-range", MLP + [
        "--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.5", "--schedule", "cyclic",
        "--max-lr", "0.05", "--step-size-up", "2", "--cyclic-mode", "exp_range", "--gamma", "0.9",
        "--no-cycle-momentum"]),
    # the half cycle in epochs (kiln's --step-size-up-epochs; torch's step_size_up in steps)
    ("sgd-cyclic-half-cycle-epochs", MLP + [
        "--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--schedule", "cyclic",
        "--max-lr", "0.05", "--step-size-up-epochs", "1"]),
    # exp_range without --gamma: CyclicLR's default gamma 1.0 (the triangular cycle)
    ("sgd-cyclic-exp-range-default-gamma", MLP + ["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9",
                                                  "--schedule", "cyclic", "--max-lr", "0.05", "--step-size-up", "2",
                                                  "--cyclic-mode", "exp_range"]),
    ("sgd-inverse-sqrt-step", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--schedule", "inverse-sqrt-step",
                                     "--k", "0.5"]),
    ("sgd-inverse-time-step", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--schedule", "inverse-time-step",
                                     "--decay", "0.3"]),
    ("sgd-exponential-step", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                                    "--schedule", "exponential-step", "--gamma", "0.9"]),
    ("warmup-steps-then-exponential", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                                             "--warmup-steps", "5", "--schedule", "exponential", "--gamma", "0.8"]),
    ("warmup-epoch-then-step", MLP + ["--optimizer", "adam", "--lr", "0.003", "--warmup-epochs", "1",
                                      "--schedule", "step", "--step-size", "1", "--gamma", "0.5"]),
    # a warm-up longer than the run (3 epochs' steps over a 2-epoch run): never reaches the lr
    ("warmup-past-the-run-then-exponential", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--warmup-epochs", "3",
                                                    "--schedule", "exponential", "--gamma", "0.5"]),
    # 128 images at batch 48: a last, partial batch of 32 every epoch (the mean over 32)
    ("sgd-momentum-partial-batch", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                                          "--schedule", "constant", "--batch-size", "48"]),
    ("sgd-inverse-sqrt-epoch", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--schedule", "inverse-sqrt-epoch"]),
    ("global-clipnorm", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                               "--schedule", "constant", "--global-clipnorm", "0.5"]),
    # SGD, not Adam: Adam's update hardly changes when a tensor's gradient is scaled. Gradient norms
    # here: biases 0.25-0.33, weights 1.0-6.6, so 1.0 clips some tensors and leaves others.
    ("clipnorm-per-tensor", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.5",
                                   "--schedule", "constant", "--clipnorm", "1.0"]),
    ("clipvalue", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--schedule", "constant",
                         "--clipvalue", "0.002"]),
    ("l1-l2-penalties", MLP + ["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
                               "--schedule", "constant", "--l1", "0.0005", "--l2", "0.005"]),
    ("l2-penalize-all-tanh", MLP + ["--activation", "tanh", "--optimizer", "sgd", "--lr", "0.05",
                                    "--schedule", "constant", "--l2", "0.01", "--penalize-all"]),
    ("batch-schedule-scale-lr", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--schedule", "constant",
                                       "--batch-schedule", "0:64,1:32", "--scale-lr"]),
    # one-cycle over a batch-size schedule: 2 + 4 steps, so OneCycleLR spans 6 (not 2 x 4)
    ("batch-schedule-one-cycle", MLP + ["--optimizer", "adam", "--lr", "0.003", "--schedule", "one-cycle",
                                        "--batch-schedule", "0:64,1:32"]),
    ("mlp-batchnorm1d-sigmoid", MLP + ["--activation", "sigmoid", "--norm", "batch",
                                       "--norm-position", "after", "--optimizer", "sgd", "--lr", "0.1",
                                       "--momentum", "0.9", "--schedule", "constant"]),
    ("cnn-batchnorm-adam-one-cycle", ["--model", "cnn", "--norm", "batch", "--optimizer", "adam",
                                      "--lr", "0.003", "--schedule", "one-cycle"]),
    ("cnn-batchnorm-before-sgd", ["--model", "cnn", "--norm", "batch", "--norm-position", "before",
                                  "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
                                  "--weight-decay", "0.0005", "--schedule", "constant"]),
    ("cnn-groupnorm-adamw", ["--model", "cnn", "--norm", "group", "--groups", "4", "--optimizer", "adamw",
                             "--lr", "0.003", "--weight-decay", "0.01", "--schedule", "one-cycle",
                             "--anneal-strategy", "linear", "--pct-start", "0.5"]),
    # 8 groups: the 1x1 conv's 8 channels one a group (its bias is left out, as before a batch
    # norm), the 16 and 24 channel layers' several a group (their biases are compared)
    ("cnn-groupnorm-per-channel-adam", ["--model", "cnn", "--norm", "group", "--groups", "8",
                                        "--optimizer", "adam", "--lr", "0.003", "--schedule", "constant"]),
    ("mlp-dropout-sgd", MLP + ["--dropout", "0.3", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                               "--schedule", "constant"]),
    # the 99.4% recipe: batch norm, dropout 0.05, Adam one-cycle
    ("cnn-batchnorm-dropout-adam", ["--model", "cnn", "--norm", "batch", "--dropout", "0.05", "--optimizer", "adam",
                                    "--lr", "0.003", "--schedule", "one-cycle"]),
    # Dropout2d (--dropout-kind channel): whole channels of each conv block dropped per sample
    ("cnn-channel-dropout-sgd", ["--model", "cnn", "--dropout", "0.1", "--dropout-kind", "channel",
                                 "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9",
                                 "--schedule", "constant"]),
    ("cnn-pool-first-tanh", ["--model", "cnn", "--pool-after", "1", "--activation", "tanh",
                             "--optimizer", "sgd", "--lr", "0.05", "--schedule", "constant"]),
    # --fuse on: the CPU references of conv+ReLU and batch norm+ReLU in one layer
    ("cnn-fused-conv-relu", ["--model", "cnn", "--fuse", "on", "--optimizer", "sgd", "--lr", "0.05",
                             "--momentum", "0.9", "--schedule", "constant"]),
    ("cnn-fused-batchnorm-relu", ["--model", "cnn", "--norm", "batch", "--fuse", "on", "--optimizer", "adam",
                                  "--lr", "0.003", "--schedule", "one-cycle"]),
    # ReduceLROnPlateau: the metric comes from torch's own evaluation of the held-out rows. With
    # --val-split 0.25 (96 train / 32 val rows) it watches the validation loss; threshold 0.5
    # counts an epoch as better only when the loss halves, so the lr drops after each epoch.
    ("sgd-plateau-min-val-split", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                                         "--schedule", "plateau", "--factor", "0.5", "--patience", "0",
                                         "--threshold", "0.5", "--val-split", "0.25", "--epochs", "3"]),
    # threshold_mode abs: a better loss is one below best - 0.1, not best * 0.9 (the test loss
    # 2.06 -> 1.88 improves by the first rule and not by the second, so the lr paths part)
    ("sgd-plateau-abs-threshold", MLP + ["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
                                         "--schedule", "plateau", "--factor", "0.5", "--patience", "0",
                                         "--threshold", "0.1", "--threshold-mode", "abs", "--train-limit", "64",
                                         "--epochs", "4"]),
    # mode max: the test accuracy (64 rows), 2 steps per epoch over 5 epochs. Threshold 0.5
    # (better = 1.5x the best accuracy): epoch 2 is better, epoch 3 is not and reduces the lr,
    # epoch 4 is not either but falls in the cooldown, so the lr must hold for epoch 5.
    ("adam-plateau-max-test-cooldown", MLP + ["--optimizer", "adam", "--lr", "0.003", "--schedule", "plateau",
                                              "--plateau-mode", "max", "--factor", "0.3", "--patience", "0",
                                              "--cooldown", "1", "--threshold", "0.5", "--train-limit", "64",
                                              "--epochs", "5"]),
]


def cifar_recipe(cifar_dir):
    """The cifar model (3x32x32, padded convs, a Linear head) on a CIFAR-10 directory."""
    return ("cifar-batchnorm-after-sgd", ["--dataset", "cifar10", "--data-dir", cifar_dir, "--model", "cifar",
                                          "--norm", "batch", "--norm-position", "after", "--optimizer", "sgd",
                                          "--lr", "0.05", "--momentum", "0.9", "--schedule", "constant"])


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd), p.returncode, p.stdout.strip()[-400:]))


def torch_optimizer(torch, net, cfg, wd_given=True):
    """torch.optim optimizer for the run config, with kiln's default parameter groups: weight
    decay (and the L1/L2 penalties) only on conv/linear weights unless --decay-all
    (--penalize-all). wd_given False: the run had no --weight-decay, so the decayed group takes
    torch's own default for the optimizer. Returns (optimizer, penalised parameters)."""
    from torch import nn
    norm_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)
    weights, others = [], []
    for module in net.modules():
        for pname, p in module.named_parameters(recurse=False):
            (others if isinstance(module, norm_types) or pname == "bias" else weights).append(p)
    wd = float(cfg["weight-decay"])
    decay_all = cfg["decay-all"] == "true"
    groups = [{"params": weights, "weight_decay": wd}, {"params": others, "weight_decay": wd if decay_all else 0.0}]
    if not wd_given:  # torch's default, not the value kiln recorded
        del groups[0]["weight_decay"]
        if decay_all:
            del groups[1]["weight_decay"]
    lr, kind = float(cfg["lr"]), cfg["optimizer"]
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=float(cfg["momentum"]), dampening=float(cfg["dampening"]),
                              nesterov=cfg["nesterov"] == "true")
    elif kind in ("adam", "adamw"):
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        opt = cls(groups, lr=lr, betas=(float(cfg["beta1"]), float(cfg["beta2"])), eps=float(cfg["eps"]))
    elif kind == "rmsprop":
        opt = torch.optim.RMSprop(groups, lr=lr, alpha=float(cfg["alpha"]), eps=float(cfg["eps"]),
                                  momentum=float(cfg["momentum"]))
    else:
        raise ValueError("optimizer '%s' has no torch mirror here" % kind)
    penalised = weights + (others if cfg["penalize-all"] == "true" else [])
    return opt, penalised


def torch_schedulers(torch, opt, cfg, steps_per_epoch, epochs, given=None):
    """[(scheduler, per_step), ...] from torch.optim.lr_scheduler: kiln's linear warm-up
    (lr * (t + 1) / W for the first W steps, composed with any schedule) is LinearLR from 1/W over
    W - 1 steps, chained with a schedule torch can chain (one that scales the current lr).
    steps_per_epoch: one count, or each epoch's (a batch-size schedule changes them). given: the
    options the run set (None: all); CyclicLR and OneCycleLR get only those, so their other
    arguments are torch's own defaults, which kiln's must then equal."""
    from torch.optim import lr_scheduler as ls
    steps = list(steps_per_epoch) if isinstance(steps_per_epoch, (list, tuple)) else [steps_per_epoch] * epochs
    # a warm-up longer than the run continues at the last epoch's step count (as kiln sizes it)
    w = int(cfg["warmup-steps"]) or sum(steps[min(e, len(steps) - 1)] for e in range(int(cfg["warmup-epochs"])))
    inner, per_step = torch_scheduler(torch, opt, cfg, steps, epochs, given)
    chainable = inner is None or isinstance(inner, (ls.StepLR, ls.MultiStepLR, ls.ExponentialLR))
    warm = [(ls.LinearLR(opt, 1.0 / w, 1.0, total_iters=w - 1), True)] if w > 0 and chainable else []
    return warm + ([(inner, per_step)] if inner is not None else [])


def warmup_factor(cfg, steps):
    """kiln's warm-up as a factor on the step's lr, (t + 1) / W for the first W steps: what
    torch's LinearLR chain gives, for the schedules torch cannot chain it with (their lr is
    computed in closed form, not scaled from the current one)."""
    w = int(cfg["warmup-steps"]) or sum(steps[min(e, len(steps) - 1)] for e in range(int(cfg["warmup-epochs"])))
    chainable = cfg["schedule"] in ("constant", "step", "multistep", "exponential", "exponential-step")
    return (lambda t: (t + 1.0) / w if t < w else 1.0) if w > 0 and not chainable else (lambda t: 1.0)


def torch_scheduler(torch, opt, cfg, steps, epochs, given=None):
    """(scheduler, per_step) from torch.optim.lr_scheduler, or (None, False) for constant;
    steps: the optimizer steps of each epoch; given: as for torch_schedulers."""
    from torch.optim import lr_scheduler as ls
    steps_per_epoch = steps[0]
    name, lr = cfg["schedule"], float(cfg["lr"])
    gamma = float(cfg["gamma"])
    t_max = int(cfg["t-max"]) or epochs
    if name == "constant":
        return None, False
    if name == "step":
        return ls.StepLR(opt, int(cfg["step-size"]), gamma), False
    if name == "multistep":
        return ls.MultiStepLR(opt, [int(m) for m in cfg["milestones"].split(",")], gamma), False
    if name == "exponential":
        return ls.ExponentialLR(opt, gamma), False
    if name in ("inverse-time", "inverse-time-step"):  # lr0 / (1 + d * t), t epoch or step
        d = float(cfg["decay"])
        return ls.LambdaLR(opt, lambda t: 1.0 / (1.0 + d * t)), name.endswith("step")
    if name == "exponential-step":  # ExponentialLR stepped after every batch
        return ls.ExponentialLR(opt, gamma), True
    if name in ("inverse-sqrt-epoch", "inverse-sqrt-step"):  # k / sqrt(t + 1) * lr0
        k = float(cfg["k"])
        return ls.LambdaLR(opt, lambda t: k / math.sqrt(t + 1.0)), name.endswith("step")
    if name == "cosine":
        return ls.CosineAnnealingLR(opt, t_max, float(cfg["eta-min"])), False
    if name == "plateau":  # steps with the metric end_epoch() is given
        return ls.ReduceLROnPlateau(opt, mode=cfg["plateau-mode"], factor=float(cfg["factor"]),
                                    patience=int(cfg["patience"]), threshold=float(cfg["threshold"]),
                                    threshold_mode=cfg.get("threshold-mode", "rel"), cooldown=int(cfg["cooldown"]),
                                    min_lr=float(cfg["min-lr"]), eps=1e-8), False
    if name == "cosine-restarts":
        return ls.CosineAnnealingWarmRestarts(opt, t_max, int(cfg["t-mult"]), float(cfg["eta-min"])), False
    def only_given(**kw):  # name -> (option, value): the arguments the run set
        return {k: v for k, (o, v) in kw.items() if given is None or o in given}
    if name == "cyclic":
        base = float(cfg["base-lr"]) or lr
        return ls.CyclicLR(opt, base, float(cfg["max-lr"]) or 10 * base,
                           step_size_up=int(cfg["step-size-up"])
                           or int(cfg.get("step-size-up-epochs", 2)) * steps_per_epoch,
                           **only_given(mode=("cyclic-mode", cfg["cyclic-mode"]), gamma=("gamma", gamma),
                                        cycle_momentum=("cycle-momentum", cfg["cycle-momentum"] == "true"),
                                        base_momentum=("base-momentum", float(cfg["base-momentum"])),
                                        max_momentum=("max-momentum", float(cfg["max-momentum"])))), True
    if name == "one-cycle":
        return ls.OneCycleLR(opt, float(cfg["max-lr"]) or lr, total_steps=sum(steps),
                             **only_given(pct_start=("pct-start", float(cfg["pct-start"])),
                                          anneal_strategy=("anneal-strategy", cfg["anneal-strategy"]),
                                          cycle_momentum=("cycle-momentum", cfg["cycle-momentum"] == "true"),
                                          base_momentum=("base-momentum", float(cfg["base-momentum"])),
                                          max_momentum=("max-momentum", float(cfg["max-momentum"])),
                                          div_factor=("div-factor", float(cfg["div-factor"])),
                                          final_div_factor=("final-div-factor", float(cfg["final-div-factor"])))), True
    raise ValueError("schedule '%s' has no torch mirror here" % name)


def batch_sizes(cfg, epochs):
    """Batch size per epoch: --batch-size, or the --batch-schedule in force."""
    sched = cfg["batch-schedule"]
    if not sched:
        return [int(cfg["batch-size"])] * epochs
    points = sorted((int(e), int(b)) for e, b in (p.split(":") for p in sched.split(",")))
    return [[b for e0, b in points if e0 <= e][-1] for e in range(epochs)]


def clip(torch, params, cfg):
    """Keras clipnorm (per tensor: g * c / max(||g||, c)), clip_grad_norm_, clip_grad_value_."""
    if float(cfg["clipnorm"]) > 0:
        c = float(cfg["clipnorm"])
        for p in params:
            n = p.grad.norm().item()
            p.grad.mul_(c / max(n, c))
    elif float(cfg["global-clipnorm"]) > 0:
        torch.nn.utils.clip_grad_norm_(params, float(cfg["global-clipnorm"]))
    elif float(cfg["clipvalue"]) > 0:
        torch.nn.utils.clip_grad_value_(params, float(cfg["clipvalue"]))


def train_step(torch, net, opt, x, y, cfg, penalised, scheds, factor=1.0):
    """One torch step of a kiln recipe: cross-entropy plus the L1/L2 penalties on `penalised`,
    backward, clipping, the optimizer step at the schedulers' lr times `factor` (the batch
    schedule's lr scaling, a warm-up torch cannot chain), then the schedulers that step per batch."""
    l1, l2 = float(cfg["l1"]), float(cfg["l2"])
    opt.zero_grad(set_to_none=False)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    if l1 or l2:
        loss = loss + sum(l1 * p.abs().sum() + l2 * (p * p).sum() for p in penalised)
    loss.backward()
    clip(torch, list(net.parameters()), cfg)
    saved = [g["lr"] for g in opt.param_groups]
    for g in opt.param_groups:
        g["lr"] = g["lr"] * factor
    opt.step()
    for g, lr in zip(opt.param_groups, saved):
        g["lr"] = lr
    for sched, per_step in scheds:
        if per_step:
            sched.step()


def end_epoch(scheds, held_out=None):
    """The schedulers that step per epoch; ReduceLROnPlateau with held_out(mode): the loss
    (mode min) or accuracy (mode max) it watches."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau
    for sched, per_step in scheds:
        if isinstance(sched, ReduceLROnPlateau):
            sched.step(held_out(sched.mode))
        elif not per_step:
            sched.step()


def evaluate(torch, net, x, y, mode):
    """Mean cross-entropy (mode min) or accuracy (mode max) of net on (x, y), in eval mode."""
    net.eval()
    with torch.no_grad():
        logits = net(x)
    net.train()
    if mode == "max":
        return (logits.argmax(1) == y).double().mean().item()
    return torch.nn.functional.cross_entropy(logits, y).item()


def redundant_biases(net):
    """Biases of a Linear/Conv2d that feeds a BatchNorm directly, or a Conv2d that feeds a
    GroupNorm of one channel per group: the norm subtracts a mean that holds the bias (the
    batch's per channel; the image's per channel), so their gradient is zero up to rounding, and
    an adaptive optimizer turns that noise into steps of +-lr whose signs no two frameworks share.
    They are left out of the comparison. (A group of several channels mixes their biases into one
    mean: their gradients are not zero.)"""
    from torch import nn

    def removes_bias(m):
        return isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) or (
            isinstance(m, nn.GroupNorm) and m.num_groups == m.num_channels)

    mods = list(net)
    return {"%d.bias" % i for i in range(len(mods) - 1)
            if isinstance(mods[i], (nn.Linear, nn.Conv2d)) and mods[i].bias is not None
            and removes_bias(mods[i + 1])}


def compare(torch, net, opt, ckpt_path, lr, momentum, tm, rtol, kink_rtol, skip):
    """Worst relative error over the checkpoint's tensors, the failures, and the tensors above
    rtol but within kink_rtol (a kink flip if few steps have them, see the module doc). A tensor's
    error is ||torch - kiln|| / ||kiln|| (L2): one ill-conditioned element (an RMSprop/Adam
    update g/sqrt(v) where g is a cancellation-sized 1e-8) cannot fail a run, a wrong formula,
    which moves every element, does."""
    tensors, meta, _ = tm.load_checkpoint(ckpt_path)
    mine = dict(net.state_dict())
    for name, p in net.named_parameters():
        for slot, value in opt.state.get(p, {}).items():
            if torch.is_tensor(value) and value.dim() > 0:
                mine["optimizer.%s.%s" % (name, slot)] = value
    failures, near, worst = [], [], 0.0
    for name in sorted(set(tensors) - set(mine)):  # a state buffer kiln keeps and torch does not create
        if not name.startswith("optimizer.") or tensors[name].abs().max().item() != 0:
            failures.append("%s: in kiln's checkpoint (not all zero), not in torch's state" % name)
    for name in sorted(set(mine) - set(tensors)):
        failures.append("%s: in torch's state, not in kiln's checkpoint" % name)
    for name in sorted(set(tensors) & set(mine)):
        if any(name == b or name.startswith("optimizer.%s." % b) for b in skip):
            continue
        k, t = tensors[name].double(), mine[name].detach().double()
        if name.endswith("num_batches_tracked"):
            if int(k) != int(t):
                failures.append("%s: kiln %d torch %d" % (name, int(k), int(t)))
            continue
        err = (k - t).norm().item() / max(k.norm().item(), 1e-30)
        worst = max(worst, err)
        if err > rtol:
            msg = "%s: relative L2 difference %.3g > %g (max element %.3g of %.3g)" % (
                name, err, rtol, (k - t).abs().max().item(), k.abs().max().item())
            (near if err <= kink_rtol else failures).append(msg)
    for what, kiln_v, torch_v in (("lr", float(meta["last_lr"]), lr),
                                  ("momentum", float(meta["last_momentum"]), momentum)):
        if torch_v is not None and abs(kiln_v - torch_v) > 1e-6 * max(abs(torch_v), 1e-12):
            failures.append("%s: kiln %.9g torch %.9g" % (what, kiln_v, torch_v))
    return worst, failures, near


def load_kiln_state(torch, net, opt, path, tm):
    """Puts kiln's state after a step into torch: the model tensors and every optimizer slot
    torch keeps (torch's own step counter already equals kiln's)."""
    tensors, _, _ = tm.load_checkpoint(path)
    net.load_state_dict(tm.model_state(tensors), strict=True)  # copies into the same parameters
    for name, p in net.named_parameters():
        for slot, value in opt.state.get(p, {}).items():
            key = "optimizer.%s.%s" % (name, slot)
            if torch.is_tensor(value) and value.dim() > 0 and key in tensors:
                value.copy_(tensors[key])


def check_recipe(flags, args, tmp, torch, tm):
    train = os.path.join(args.bin, "train_mnist")
    base = [train] + COMMON + ["--data-dir", args.data_dir] + flags
    init = os.path.join(tmp, "init.safetensors")
    ck = os.path.join(tmp, "ck")
    run(base + ["--epochs", "0", "--save", init])  # the step-0 weights (a later flag wins)
    run(base + ["--checkpoint-dir", ck, "--checkpoint-every-steps", "1", "--keep-last", "0"])
    # The checkpoint after each step: ckpt-step-<S>, or, after an epoch's last batch, the epoch's
    # (kiln writes that one at the epoch end, after its evaluation).
    after = {}
    for name in os.listdir(ck):
        if name.startswith("ckpt-step-") and name.endswith(".safetensors"):
            after[int(name[len("ckpt-step-"):-len(".safetensors")])] = os.path.join(ck, name)
        elif name.startswith("ckpt-epoch-") and name.endswith(".safetensors"):
            after[int(tm.read_safetensors(os.path.join(ck, name))[1]["step"])] = os.path.join(ck, name)
    ckpt_after = lambda s: after.get(s, os.path.join(ck, "ckpt-step-%d.safetensors" % s))  # noqa: E731
    _, _, cfg = tm.load_checkpoint(ckpt_after(1))  # the run's config
    init_tensors, _, _ = tm.load_checkpoint(init)
    kiln_eval = os.path.join(args.bin, "kiln_eval")
    _, labels, images = tm.kiln_eval_dump(kiln_eval, init, cfg["data-dir"], split="train")
    held_out = None
    if cfg["schedule"] == "plateau":  # what it watches: the validation split, else the test rows
        val = float(cfg["val-split"]) > 0
        _, hy, hx = tm.kiln_eval_dump(kiln_eval, init, cfg["data-dir"], split="val" if val else "test",
                                      test_limit=0 if val else int(cfg["test-limit"]))
        hx = hx.double()
        held_out = lambda mode: evaluate(torch, net, hx, hy, mode)  # noqa: E731

    net = tm.build_model(cfg, images.shape[1], images[0].numel(), 10).double()
    images = images.double()
    net.load_state_dict(tm.model_state(init_tensors), strict=True)
    drops = tm.use_kiln_dropout(net, int(cfg["seed"]))  # kiln's mask, drawn from (seed, step, layer)
    net.train()
    opt, penalised = torch_optimizer(torch, net, cfg, wd_given="--weight-decay" in flags)
    epochs = int(cfg["epochs"])
    sizes = batch_sizes(cfg, epochs)
    steps = [-(-images.shape[0] // b) for b in sizes]  # kiln keeps a last, partial batch
    given = {f[5:] if f.startswith("--no-") else f[2:] for f in flags if f.startswith("--")}  # --no-x sets x
    scheds = torch_schedulers(torch, opt, cfg, steps, epochs, given)
    warm = warmup_factor(cfg, steps)
    step, worst, failures = 0, 0.0, []
    skip = redundant_biases(net)
    step_worst, excess = [], []  # per step: the worst tensor error, and the tensors above rtol
    for epoch in range(epochs):
        bs = sizes[epoch]
        # the linear scaling rule against the first batch size, on whatever the schedule gives
        scale = bs / sizes[0] if cfg["scale-lr"] == "true" and cfg["batch-schedule"] else 1.0
        for start in range(0, images.shape[0], bs):  # the last, partial batch too (as kiln)
            g0 = opt.param_groups[0]
            factor = scale * warm(step)
            lr = g0["lr"] * factor
            momentum = g0["betas"][0] if "betas" in g0 else g0.get("momentum")
            x, y = images[start:start + bs], labels[start:start + bs]
            if step > 0 and not args.free_run:
                load_kiln_state(torch, net, opt, ckpt_after(step), tm)
            for d in drops:
                d.step = step
            train_step(torch, net, opt, x, y, cfg, penalised, scheds, factor)
            step += 1
            path = ckpt_after(step)
            if not os.path.exists(path):
                failures.append("kiln wrote no checkpoint after step %d: it took fewer steps than torch" % step)
                return step, worst, worst, failures, skip, []
            sched_momentum = cfg["schedule"] in ("cyclic", "one-cycle") and cfg["cycle-momentum"] == "true"
            w, f, n = compare(torch, net, opt, path, lr, momentum if sched_momentum else None, tm, args.rtol,
                              args.kink_rtol, skip)
            worst = max(worst, w)
            failures += ["step %d: %s" % (step, m) for m in f]
            step_worst.append(w)
            excess += ["step %d: %s" % (step, m) for m in n]
        end_epoch(scheds, held_out)
    if step not in after or (step + 1) in after:
        failures.append("kiln took a different number of steps than torch (%d)" % step)
    # A kink flip is one step's event; a wrong formula shows on most steps.
    median = sorted(step_worst)[len(step_worst) // 2] if step_worst else 0.0  # the upper median
    if median > args.rtol:
        failures += excess
    return step, worst, median, failures, skip, [i + 1 for i, w in enumerate(step_worst) if w > args.rtol]


def random_recipe(r):
    """A random recipe over the option space this checker maps (--random): optimizer and its
    options, weight decay, clipping, every schedule with edge values (gamma 1, milestones past
    the run or repeated, t-max 1, warm-ups longer than the run, min-lr above the lr), batch
    sizes that leave a partial last batch, batch schedules with and without lr scaling."""
    c = r.choice

    def some(*options):  # each (flag, values, p): the flag with a random value, with probability p
        for flag, values, p in options:
            if r.random() < p:
                f.extend([flag, c(values)])

    f = ["--model", "mlp", "--width", str(c([16, 32])), "--depth", str(c([1, 2]))]
    if r.random() < 0.15:
        f += ["--activation", c(["tanh", "sigmoid"])]
    opt = c(["sgd", "sgd", "adam", "adamw", "rmsprop"])
    f += ["--optimizer", opt]
    if opt == "sgd":
        f += ["--lr", c(["0.01", "0.05", "0.1", "0"])]
        if r.random() < 0.7:
            f += ["--momentum", c(["0", "0.5", "0.9"])]
            if r.random() < 0.3 and f[-1] != "0":
                f += ["--nesterov"]
            elif r.random() < 0.4:
                f += ["--dampening", c(["0.1", "0.5", "1"])]
    elif opt in ("adam", "adamw"):
        f += ["--lr", c(["0.001", "0.003", "0.01"])]
        for flag, values in (("--beta1", ["0.8", "0.0", "0.95"]), ("--beta2", ["0.99", "0.9"]), ("--eps", ["1e-3", "1e-6"])):
            if r.random() < 0.3:
                f += [flag, c(values)]
    else:
        f += ["--lr", c(["0.001", "0.003"])]
        if r.random() < 0.5:
            f += ["--momentum", c(["0", "0.5", "0.9"])]
        if r.random() < 0.4:
            f += ["--alpha", c(["0.9", "0.5", "0.0"])]
        if r.random() < 0.3:
            f += ["--eps", c(["1e-3", "1e-6"])]
    if r.random() < 0.4:
        f += ["--weight-decay", c(["0", "0.01", "0.1"])]
    if r.random() < 0.3:
        f += ["--decay-all"]
    u = r.random()
    if u < 0.12:
        f += ["--clipnorm", c(["0.5", "1.0"])]
    elif u < 0.24:
        f += ["--global-clipnorm", c(["0.5", "1.0", "100"])]
    elif u < 0.36:
        f += ["--clipvalue", c(["0.002", "0.01"])]
    f += ["--epochs", str(c([2, 3, 4]))]
    if r.random() < 0.25:
        f += ["--batch-schedule", c(["0:64,1:32", "0:48,1:40", "0:100,2:30", "0:32,1:64", "0:50,1:50,3:24"])]
        if r.random() < 0.6:
            f += ["--scale-lr"]
    else:
        f += ["--batch-size", str(c([16, 24, 32, 40, 48, 50, 60, 100, 127, 128, 200]))]
    sched = c(["constant", "step", "multistep", "exponential", "exponential-step", "inverse-time",
               "inverse-time-step", "inverse-sqrt-epoch", "inverse-sqrt-step", "cosine", "cosine-restarts",
               "cyclic", "cyclic", "one-cycle", "one-cycle", "plateau", "plateau"])
    f += ["--schedule", sched]
    if sched == "step":
        f += ["--step-size", str(c([1, 2, 3, 5])), "--gamma", c(["0.5", "1", "0.1"])]
    elif sched == "multistep":
        f += ["--milestones", c(["1", "1,2", "0,2", "2,1", "1,1", "5", "0", "3"])]
        if r.random() < 0.7:
            f += ["--gamma", c(["0.5", "1", "0.3"])]
    elif sched in ("exponential", "exponential-step"):
        f += ["--gamma", c(["0.9", "1", "0.5"])]
    elif sched.startswith("inverse-time"):
        f += ["--decay", c(["0", "0.3", "1"])]
    elif sched.startswith("inverse-sqrt"):
        if r.random() < 0.6:
            f += ["--k", c(["1", "0.5", "2"])]
    elif sched == "cosine":
        if r.random() < 0.6:
            f += ["--t-max", str(c([1, 2, 3]))]
        if r.random() < 0.5:
            f += ["--eta-min", c(["1e-4", "0.001", "0.02"])]
    elif sched == "cosine-restarts":
        if r.random() < 0.7:
            f += ["--t-max", str(c([1, 2]))]
        if r.random() < 0.6:
            f += ["--t-mult", str(c([1, 2, 3]))]
        if r.random() < 0.5:
            f += ["--eta-min", c(["1e-4", "0.001"])]
    elif sched == "cyclic":
        some(("--base-lr", ["0.001", "0.02", "0.3"], 0.5), ("--max-lr", ["0.05", "0.1"], 0.6),
             ("--step-size-up", ["1", "2", "3", "4", "7", "50"], 0.7),
             ("--cyclic-mode", ["triangular", "triangular2", "exp_range"], 0.7), ("--gamma", ["0.9", "0.99"], 0.4))
        if "--step-size-up" not in f and r.random() < 0.5:
            f += ["--step-size-up-epochs", c(["1", "3"])]
        if opt in ("adam", "adamw") or r.random() < 0.3:
            f += ["--no-cycle-momentum"]  # torch 1.13's CyclicLR cannot cycle Adam's beta1
        else:
            some(("--base-momentum", ["0", "0.5"], 0.4), ("--max-momentum", ["0.9", "0.95"], 0.4))
    elif sched == "one-cycle":
        some(("--max-lr", ["0.005", "0.05", "0.1"], 0.5),
             ("--pct-start", ["0.05", "0.2", "0.45", "0.5", "0.6", "0.95", "0.99"], 0.5),
             ("--div-factor", ["1", "2", "10"], 0.4), ("--final-div-factor", ["1", "100", "1e5"], 0.4),
             ("--anneal-strategy", ["cos", "linear"], 0.5))
        if r.random() < 0.3:
            f += ["--no-cycle-momentum"]
        else:
            some(("--base-momentum", ["0.5", "0.8"], 0.3), ("--max-momentum", ["0.9", "0.99"], 0.3))
    elif sched == "plateau":
        f += ["--factor", c(["0.5", "0.1", "0.9"]), "--patience", str(c([0, 0, 1, 2]))]
        some(("--cooldown", ["1", "2"], 0.4), ("--threshold", ["0", "0.01", "0.1", "0.5"], 0.6),
             ("--threshold-mode", ["abs"], 0.3), ("--plateau-mode", ["max"], 0.3),
             ("--min-lr", ["0.0005", "0.02", "0.05", "1"], 0.3), ("--val-split", ["0.25"], 0.4))
    if r.random() < 0.3:
        f += ["--warmup-steps", str(c([1, 2, 3, 5, 7, 50]))] if r.random() < 0.5 else \
             ["--warmup-epochs", str(c([1, 2, 3, 9]))]
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(here), "build-cpu"))
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(here), "tests", "data"))
    ap.add_argument("--only", action="append", default=[], help="recipe name (repeatable)")
    ap.add_argument("--cifar-dir", default=None,
                    help="a directory with cifar10/ (real or generated, >= 128 training records): adds a recipe "
                         "for the cifar model")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--show", type=int, default=6, help="failures printed per recipe")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--kink-rtol", type=float, default=2e-2,
                    help="the bound for any single step (the median step must meet --rtol)")
    ap.add_argument("--free-run", action="store_true",
                    help="let torch's trajectory run on its own instead of restarting each step from kiln's "
                         "state (shows how fast rounding differences grow; not a pass/fail measure)")
    ap.add_argument("--keep", default=None, help="keep each recipe's kiln checkpoints under this directory")
    ap.add_argument("--random", type=int, default=0, metavar="N",
                    help="instead of the fixed recipes, N random ones (random_recipe) from --seed on; "
                         "each is named random-<seed>, so one that fails reproduces with --random 1 --seed <seed>")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    recipes = RECIPES + ([cifar_recipe(os.path.abspath(args.cifar_dir))] if args.cifar_dir else [])
    if args.random:
        import random
        recipes = [("random-%d" % i, random_recipe(random.Random(i))) for i in range(args.seed, args.seed + args.random)]
    if args.list:
        for name, flags in recipes:
            print("%-36s %s" % (name, " ".join(flags)))
        return 0
    try:
        import torch
    except ImportError:
        print("check_pytorch_training: torch is not installed; skipped")
        return 77
    sys.path.insert(0, here)
    import torch_mirror as tm
    torch.set_num_threads(1)
    unknown = set(args.only) - {n for n, _ in recipes}
    if unknown:
        print("check_pytorch_training: unknown recipe %s (--list names them)" % sorted(unknown))
        return 2
    bad = 0
    print("%-36s %5s %10s %10s  %s" % ("recipe", "steps", "median", "worst", "result"))
    for name, flags in recipes:
        if args.only and name not in args.only:
            continue
        if args.keep:
            tmp = os.path.join(args.keep, name)
            os.makedirs(tmp, exist_ok=True)
            result = check_recipe(flags, args, tmp, torch, tm)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                result = check_recipe(flags, args, tmp, torch, tm)
        steps, worst, median, failures, skip, above = result
        bad += bool(failures)
        notes = (["step %s above rtol" % ",".join(map(str, above))] if above and not failures else []) + \
            (["not compared: %d biases feeding a norm that removes them" % len(skip)] if skip else [])
        note = " (%s)" % "; ".join(notes) if notes else ""
        print("%-36s %5d %10.2g %10.2g  %s%s" % (name, steps, median, worst, "MISMATCH" if failures else "ok", note),
              flush=True)
        for f in failures[:args.show]:
            print("    " + f)
        if failures and args.random:
            print("    flags: " + " ".join(flags))
    print("check_pytorch_training: %d recipes, %d mismatched (median step within rtol %g, every step within %g)" % (
        sum(1 for n, _ in recipes if not args.only or n in args.only), bad, args.rtol, args.kink_rtol))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
