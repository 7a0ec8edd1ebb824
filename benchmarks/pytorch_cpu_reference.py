#!/usr/bin/env python3
"""kiln against PyTorch on the CPU, whole runs: the same model from the same initial weights,
the same normalised MNIST inputs, the same recipe, trained for a few epochs by kiln's CPU
path and by torch; per epoch, test accuracy and training images/s of both.

    benchmarks/pytorch_cpu_reference.py [--bin build-cpu] [--data-dir data] [--epochs 3]
                                        [--threads 1] [--json FILE] [-- train_mnist options]

kiln runs `train_mnist --device cpu` (its own per-epoch images/s, training only); its step-0
weights (`--epochs 0 --save`) and the exact inputs (`kiln_eval --split train|test`) go to torch,
which rebuilds the model (scripts/torch_mirror.py) and the optimizer and schedule from the run's
config as scripts/check_pytorch_training.py does, shuffles with its own generator (so the two
runs see the batches in different orders: accuracies agree to seed noise, not to rounding), and
times its training loop with perf_counter. Both get --threads (default 1: kiln's
`--threads`, torch's set_num_threads). Exits 77 when torch is not installed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main():
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-cpu"))
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "data"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the per-epoch records here")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("pytorch_cpu_reference: torch is not installed; skipped")
        return 77
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import check_pytorch_training as cpt
    import torch_mirror as tm
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        base = [os.path.join(args.bin, "train_mnist"), "--device", "cpu", "--data-dir", args.data_dir,
                "--seed", str(args.seed), "--threads", str(args.threads)] + extra
        init = os.path.join(tmp, "init.safetensors")
        log = os.path.join(tmp, "kiln.jsonl")
        subprocess.run(base + ["--epochs", "0", "--save", init], check=True, stdout=subprocess.DEVNULL)
        print("kiln: training %d epochs ..." % args.epochs, flush=True)
        subprocess.run(base + ["--epochs", str(args.epochs), "--log", log], check=True, stdout=subprocess.DEVNULL)
        kiln = [r for r in map(json.loads, open(log)) if r.get("type") == "epoch"]
        tensors, _, cfg = tm.load_checkpoint(init)
        kiln_eval = os.path.join(args.bin, "kiln_eval")
        _, y_train, x_train = tm.kiln_eval_dump(kiln_eval, init, split="train")
        _, y_test, x_test = tm.kiln_eval_dump(kiln_eval, init, split="test")

    net = tm.build_model(cfg, x_train.shape[1], x_train[0].numel(), 10)
    net.load_state_dict(tm.model_state(tensors), strict=True)
    opt, penalised = cpt.torch_optimizer(torch, net, cfg)
    bs, n = int(cfg["batch-size"]), x_train.shape[0]
    steps_per_epoch = (n + bs - 1) // bs  # kiln keeps the last, partial batch
    scheds = cpt.torch_schedulers(torch, opt, cfg, steps_per_epoch, args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        t0 = time.perf_counter()
        for start in range(0, n, bs):
            idx = perm[start:start + bs]
            cpt.train_step(torch, net, opt, x_train[idx], y_train[idx], cfg, penalised, scheds)
        seconds = time.perf_counter() - t0
        cpt.end_epoch(scheds)
        net.eval()
        with torch.no_grad():
            correct = sum((net(x_test[i:i + 1000]).argmax(1) == y_test[i:i + 1000]).sum().item()
                          for i in range(0, x_test.shape[0], 1000))
        k = kiln[epoch]
        rows.append({"epoch": epoch + 1, "kiln_test_acc": k["test_acc"], "torch_test_acc": correct / x_test.shape[0],
                     "kiln_images_per_s": k["images_per_s"], "torch_images_per_s": n / seconds,
                     "torch_threads": args.threads, "torch": torch.__version__})
        r = rows[-1]
        print("epoch %d: kiln test_acc %.4f %7.0f img/s | torch test_acc %.4f %7.0f img/s (%d thread%s)"
              % (r["epoch"], r["kiln_test_acc"], r["kiln_images_per_s"], r["torch_test_acc"],
                 r["torch_images_per_s"], args.threads, "" if args.threads == 1 else "s"), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            for r in rows:
                f.write(json.dumps(dict(r, config=" ".join(extra))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
