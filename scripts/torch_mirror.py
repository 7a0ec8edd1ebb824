"""kiln's models and checkpoints seen from PyTorch, for the interop and training-parity checks
(check_pytorch_interop.py, check_pytorch_training.py): a safetensors reader (no `safetensors`
package needed), kiln_eval's dumps as tensors, the torch nn.Sequential that mirrors
layers/models.cpp and models_cnn.cpp layer for layer, so its state_dict names are the names in
a kiln checkpoint, and kiln's dropout mask (its counter hash, re-derived) as a torch module.
Importing this module needs torch; callers check for it first.
"""
import json
import math
import os
import subprocess
import tempfile

import torch
from torch import nn

from safetensors_file import read_safetensors  # noqa: F401 (tm.read_safetensors too)

DTYPES = {"F32": torch.float32, "I64": torch.int64, "F64": torch.float64, "I32": torch.int32}


def to_torch(entry):
    dtype, shape, raw = entry
    t = torch.frombuffer(bytearray(raw), dtype=DTYPES[dtype]) if raw else torch.empty(0, dtype=DTYPES[dtype])
    return t.reshape(shape)


def load_checkpoint(path):
    """(tensors as torch tensors, metadata, the run's config dict)."""
    raw, meta = read_safetensors(path)
    return {k: to_torch(v) for k, v in raw.items()}, meta, json.loads(meta["config"])


def kiln_eval_dump(kiln_eval, checkpoint, data_dir=None, split="test", test_limit=0):
    """Runs kiln_eval on the CPU; returns its logits, labels and the exact inputs it used."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "dump.safetensors")
        cmd = [kiln_eval, checkpoint, "--device", "cpu", "--split", split, "--dump-logits", dump]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        if test_limit:
            cmd += ["--test-limit", str(test_limit)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        out, _ = read_safetensors(dump)
    return to_torch(out["logits"]), to_torch(out["labels"]), to_torch(out["images"])


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def build_model(cfg, in_channels, in_features, classes):
    """The nn.Sequential for a kiln run config (mlp, cnn, cifar with their norm/activation/
    dropout tails), or raises ValueError for a model it does not know."""
    act = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[cfg["activation"]]
    norm, groups = cfg["norm"], int(cfg["groups"])
    dropout, kind = float(cfg["dropout"]), cfg.get("dropout-kind", "element")
    layers = []

    def tail(features, spatial):
        def add_norm():
            if norm == "batch":
                layers.append(nn.BatchNorm2d(features) if spatial else nn.BatchNorm1d(features))
            elif norm == "group":
                layers.append(nn.GroupNorm(groups, features))
        if cfg["norm-position"] == "before":
            add_norm()
            layers.append(act())
        else:
            layers.append(act())
            add_norm()
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout) if spatial and kind == "channel" else nn.Dropout(dropout))

    model = cfg["model"]
    if model == "mlp":
        layers.append(nn.Flatten())
        f = in_features
        for _ in range(int(cfg["depth"])):
            layers.append(nn.Linear(f, int(cfg["width"])))
            f = int(cfg["width"])
            tail(f, False)
        layers.append(nn.Linear(f, classes))
    elif model in ("cnn", "cifar"):
        c = in_channels

        def conv(cout, k, pad):
            nonlocal c
            layers.append(nn.Conv2d(c, cout, k, padding=pad))
            tail(cout, True)
            c = cout
        if model == "cnn":  # the 7-conv plan, max pooling after --pool-after of them
            pool_after = int(cfg.get("pool-after", 4))
            for i, (cout, k) in enumerate(((16, 3), (16, 3), (16, 3), (8, 1), (24, 3), (24, 3), (24, 3))):
                if i == pool_after:
                    layers.append(nn.MaxPool2d(2))
                conv(cout, k, 0)
            if pool_after == 7:
                layers.append(nn.MaxPool2d(2))
            layers.append(nn.Conv2d(c, classes, 1))
            layers.append(GlobalAvgPool())
        else:
            for width in (32, 64, 128):
                conv(width, 3, 1)
                conv(width, 3, 1)
                layers.append(nn.MaxPool2d(2))
            layers.append(GlobalAvgPool())
            layers.append(nn.Linear(c, classes))
    else:
        raise ValueError("unknown model '%s'" % model)
    return nn.Sequential(*layers)


M64 = (1 << 64) - 1


def _mix64(z):
    """kernels/dropout/hash.h mix64 (splitmix64's finalizer), on python ints or uint64 arrays."""
    import numpy as np
    if isinstance(z, np.ndarray):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def kiln_dropout_keep(seed, step, salt, n, p):
    """kiln's dropout mask (kernels/dropout/hash.h) for n counters: the key mixes (seed, step,
    salt; the model builders give each dropout layer its index as salt, layers/model_blocks.cpp),
    counter i is kept when the top 32 bits of mix64(key + i * golden) reach p * 2^32. Returns a
    bool numpy array."""
    import numpy as np
    k = _mix64((seed + 0x9E3779B97F4A7C15) & M64)
    k = _mix64(k ^ ((step + 0xD1B54A32D192ED03) & M64))
    key = _mix64(k ^ ((salt * 0xA24BAED4963EE407 + 1) & M64))
    t = p * 4294967296.0
    threshold = 0xFFFFFFFF if t >= 4294967295.0 else int(t)
    with np.errstate(over="ignore"):
        i = np.arange(n, dtype=np.uint64)
        bits = _mix64(np.uint64(key) + i * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)
    return bits >= np.uint64(threshold)


class KilnDropout(nn.Module):
    """Inverted dropout with kiln's mask instead of torch's generator, so a training step with
    dropout can be compared with kiln's; set .step (optimizer steps taken) before each forward.
    channel: Dropout2d, one counter per (sample, channel) (kernels/dropout/dropout_ref.cpp)."""

    def __init__(self, p, seed, salt, channel=False):
        super().__init__()
        self.p, self.seed, self.salt, self.step, self.channel = p, seed, salt, 0, channel

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        shape = x.shape[:2] + (1,) * (x.dim() - 2) if self.channel else x.shape
        keep = kiln_dropout_keep(self.seed, self.step, self.salt, math.prod(shape), self.p)
        mask = torch.from_numpy(keep).reshape(shape).to(x.dtype)
        return x * mask / (1.0 - self.p)


def use_kiln_dropout(net, seed):
    """Replaces the nn.Dropout and nn.Dropout2d layers of a mirrored model by KilnDropout;
    returns them."""
    swapped = []
    for i, m in enumerate(net):
        if isinstance(m, (nn.Dropout, nn.Dropout2d)):
            net[i] = KilnDropout(m.p, seed, i, channel=isinstance(m, nn.Dropout2d))
            swapped.append(net[i])
    return swapped


def model_state(tensors):
    """The model's part of a checkpoint (drops the optimizer.* state and the --restore-best
    snapshot, early_stop.best.*)."""
    return {k: v for k, v in tensors.items() if not k.startswith(("optimizer.", "early_stop.best."))}
