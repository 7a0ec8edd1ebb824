"""kiln's models and checkpoints seen from PyTorch, for the interop and training-parity checks
(check_pytorch_interop.py, check_pytorch_training.py): a safetensors reader (no `safetensors`
package needed), kiln_eval's dumps as tensors, and the torch nn.Sequential that mirrors
layers/models.cpp and models_cnn.cpp layer for layer, so its state_dict names are the names in
a kiln checkpoint. Importing this module needs torch; callers check for it first.
"""
import json
import os
import struct
import subprocess
import tempfile

import torch
from torch import nn

DTYPES = {"F32": torch.float32, "I64": torch.int64, "F64": torch.float64, "I32": torch.int32}


def read_safetensors(path):
    """name -> (dtype, shape, raw bytes), metadata."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    return {k: (v["dtype"], v["shape"], b[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in header.items()}, meta


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


def model_state(tensors):
    """The model's part of a checkpoint (drops the optimizer.* state)."""
    return {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
