#!/usr/bin/env python3
"""PyTorch reference for bench_train: the same models, init, optimizer and recipe as kiln.

Models mirror layers/models.cpp (make_mlp) and layers/models_cnn.cpp (make_cnn, make_cifar)
layer for layer, with kiln's default recipe (apps/app_common.h): Kaiming-uniform weights
(bound sqrt(6/fan_in)), PyTorch's default bias init (bound 1/sqrt(fan_in)), Adam with OneCycleLR
peaking at --lr (pct_start 0.3, div 25, final div 1e4, beta1 cycled 0.95 -> 0.85), MLP width
256 and depth 2. Data: synthetic tensors of MNIST shape (60000x1x28x28; mlp, cnn) or CIFAR shape
(50000x3x32x32; cifar) preloaded on the GPU, shuffled by a device permutation each epoch, the
batch gathered on the device; loss and accuracy summed on the device, read once per epoch.

Modes: eager; graphs (torch.cuda.graphs: forward + backward + capturable Adam captured once,
replayed with static inputs; the lr is a device tensor the scheduler fills, but OneCycleLR's
beta1 cycling is frozen at its captured value, which does not change the work done); compile
(torch.compile of the model, optimizer eager), skipped with a note when it fails.
Each (model, batch, mode) runs one warm-up epoch, then --epochs timed epochs (CUDA events);
the median epoch gives images/s. One JSON object per line on stdout.

Exits 0 with a message when torch or CUDA is missing (nothing to compare against).
"""
import argparse
import json
import math
import statistics
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mlp,cnn,cifar")
    ap.add_argument("--batches", default="128,512", help="comma list, e.g. 32,128,512")
    ap.add_argument("--modes", default="eager,graphs,compile")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--train-size", type=int, default=0, help="samples per epoch (0: 60000 / 50000)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("pytorch_reference: torch is not installed; nothing to compare (pip install torch)", file=sys.stderr)
        return 0
    if not torch.cuda.is_available():
        print("pytorch_reference: no CUDA device answers; nothing to compare", file=sys.stderr)
        return 0
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False  # kiln's default precision is fp32
    torch.backends.cudnn.allow_tf32 = False
    for model in args.models.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            for mode in args.modes.split(","):
                rec = {"source": "pytorch", "model": model, "batch": batch, "mode": mode,
                       "device": torch.cuda.get_device_name(), "torch": torch.__version__}
                try:
                    rec.update(run(torch, model, batch, mode, args))
                except Exception as e:  # noqa: BLE001 - a failing mode is reported, not fatal
                    rec["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                print(json.dumps(rec), flush=True)
    return 0


def build(torch, model):
    nn = torch.nn

    def conv(cin, cout, k, pad):
        return [nn.Conv2d(cin, cout, k, padding=pad), nn.ReLU()]

    if model == "mlp":  # make_mlp: Flatten, depth x (Linear(width) + ReLU), Linear(10)
        layers = [nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)]
    elif model == "cnn":  # make_cnn
        layers = (conv(1, 16, 3, 0) + conv(16, 16, 3, 0) + conv(16, 16, 3, 0) + conv(16, 8, 1, 0)
                  + [nn.MaxPool2d(2)] + conv(8, 24, 3, 0) + conv(24, 24, 3, 0) + conv(24, 24, 3, 0)
                  + [nn.Conv2d(24, 10, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()])
    elif model == "cifar":  # make_cifar
        layers, c = [], 3
        for w in (32, 64, 128):
            layers += conv(c, w, 3, 1) + conv(w, w, 3, 1) + [nn.MaxPool2d(2)]
            c = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10)]
    else:
        raise ValueError(f"unknown model {model}")
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            nn.init.uniform_(m.weight, -math.sqrt(6.0 / fan_in), math.sqrt(6.0 / fan_in))  # kaiming
            nn.init.uniform_(m.bias, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
    return net


def run(torch, model, batch, mode, args):
    dev = torch.device("cuda")
    torch.manual_seed(0)
    shape = (3, 32, 32) if model == "cifar" else (1, 28, 28)
    n = args.train_size or (50000 if model == "cifar" else 60000)
    X = torch.randn((n,) + shape, device=dev)
    Y = torch.randint(0, 10, (n,), device=dev)
    net = build(torch, model).to(dev)
    graphs = mode == "graphs"
    lr = torch.tensor(args.lr, device=dev) if graphs else args.lr
    opt = torch.optim.Adam(net.parameters(), lr=lr, capturable=graphs)
    steps = (n + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps * (args.epochs + 1))
    fwd = torch.compile(net) if mode == "compile" else net
    loss_fn = torch.nn.CrossEntropyLoss()
    sums = torch.zeros(2, device=dev)  # loss sum, correct

    def step(x, y):
        opt.zero_grad(set_to_none=False)
        logits = fwd(x)
        loss = loss_fn(logits, y)
        loss.backward()
        opt.step()
        sums[0] += loss.detach() * x.shape[0]
        sums[1] += (logits.argmax(1) == y).sum()

    static_x = torch.empty((batch,) + shape, device=dev)
    static_y = torch.empty((batch,), dtype=torch.long, device=dev)
    graph = None
    if graphs:  # warm up on a side stream, as torch.cuda.graphs asks, then capture
        static_x.copy_(X[:batch])
        static_y.copy_(Y[:batch])
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                step(static_x, static_y)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step(static_x, static_y)

    def epoch():
        sums.zero_()
        perm = torch.randperm(n, device=dev)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            if graph is not None and idx.numel() == batch:
                static_x.copy_(X[idx])
                static_y.copy_(Y[idx])
                graph.replay()
            else:
                step(X[idx], Y[idx])
            sched.step()
        return sums.tolist()  # the one host sync of the epoch

    epoch()  # warm-up (compile happens here)
    times = []
    for _ in range(args.epochs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        epoch()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    med = statistics.median(times)
    return {"epoch_ms": med, "images_per_s": n / (med / 1e3), "epochs_timed": len(times)}


if __name__ == "__main__":
    sys.exit(main())
