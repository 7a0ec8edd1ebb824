#!/usr/bin/env python3
"""PyTorch interop check: a kiln checkpoint loads into the equivalent torch model and gives the
same logits on the test set.

    scripts/check_pytorch_interop.py CHECKPOINT [--kiln-eval build-cpu/kiln_eval] [--data-dir data]
                                     [--test-limit N] [--rtol 1e-4]

kiln_eval writes kiln's logits together with the exact normalised inputs it used; the script
rebuilds the architecture from the checkpoint's own config metadata (mlp, cnn, cifar with their
norm/activation/dropout tails, mirroring layers/models*.cpp so nn.Sequential indices equal the
state_dict names), loads the weights with load_state_dict(strict=True) (the safetensors format
is parsed directly, no `safetensors` package needed), runs the same inputs in eval mode and
requires max|torch - kiln| <= rtol * max|kiln|. Without torch it prints "skipped" and exits 0.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--kiln-eval", default=os.path.join("build-cpu", "kiln_eval"))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--test-limit", type=int, default=0)
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args()
    try:
        import torch
        from torch import nn
    except ImportError:
        print("check_pytorch_interop: torch is not installed; skipped")
        return 0

    tensors, meta = read_safetensors(args.checkpoint)
    cfg = json.loads(meta["config"])
    dtypes = {"F32": torch.float32, "I64": torch.int64, "F64": torch.float64, "I32": torch.int32}

    def to_torch(entry):
        dtype, shape, raw = entry
        t = torch.frombuffer(bytearray(raw), dtype=dtypes[dtype]) if raw else torch.empty(0, dtype=dtypes[dtype])
        return t.reshape(shape)

    # kiln's logits and the inputs it saw.
    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "logits.safetensors")
        cmd = [args.kiln_eval, args.checkpoint, "--device", "cpu", "--dump-logits", dump]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        if args.test_limit:
            cmd += ["--test-limit", str(args.test_limit)]
        subprocess.run(cmd, check=True)
        out, _ = read_safetensors(dump)
    kiln_logits, images = to_torch(out["logits"]), to_torch(out["images"])

    # The architecture, as layers/models.cpp and models_cnn.cpp build it.
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

    class GlobalAvgPool(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    c_in, classes = images.shape[1], kiln_logits.shape[1]
    model = cfg["model"]
    if model == "mlp":
        layers.append(nn.Flatten())
        f = images[0].numel()
        for _ in range(int(cfg["depth"])):
            layers.append(nn.Linear(f, int(cfg["width"])))
            f = int(cfg["width"])
            tail(f, False)
        layers.append(nn.Linear(f, classes))
    elif model in ("cnn", "cifar"):
        c = c_in

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
        print("check_pytorch_interop: unknown model '%s'" % model)
        return 1
    net = nn.Sequential(*layers)
    state = {k: to_torch(v) for k, v in tensors.items() if not k.startswith("optimizer.")}
    net.load_state_dict(state, strict=True)
    net.eval()
    with torch.no_grad():
        torch_logits = torch.cat([net(images[i:i + 500]) for i in range(0, images.shape[0], 500)])
    err = (torch_logits - kiln_logits).abs().max().item()
    scale = max(kiln_logits.abs().max().item(), 1e-12)
    agree = (torch_logits.argmax(1) == kiln_logits.argmax(1)).float().mean().item()
    ok = err <= args.rtol * scale
    print("check_pytorch_interop: %s %s, %d samples: max |torch - kiln| = %.3g (%.3g relative, limit %g), "
          "argmax agreement %.4f: %s" % (args.checkpoint, model, images.shape[0], err, err / scale, args.rtol,
                                         agree, "OK" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
