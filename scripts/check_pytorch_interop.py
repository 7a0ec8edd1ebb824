#!/usr/bin/env python3
"""PyTorch interop check: a kiln checkpoint loads into the equivalent torch model and gives the
same logits on the test set.

    scripts/check_pytorch_interop.py CHECKPOINT [--kiln-eval build-cpu/kiln_eval] [--data-dir DIR]
                                     [--test-limit N] [--rtol 1e-4]

(--data-dir: default the data directory the checkpoint's run recorded, as kiln_eval's.)

kiln_eval writes kiln's logits together with the exact normalised inputs it used; the script
rebuilds the architecture from the checkpoint's own config metadata (scripts/torch_mirror.py:
mlp, cnn, cifar with their norm/activation/dropout tails, mirroring layers/models*.cpp so
nn.Sequential indices equal the state_dict names), loads the weights with
load_state_dict(strict=True) (the safetensors format is parsed directly, no `safetensors`
package needed), runs the same inputs in eval mode and requires max|torch - kiln| <= rtol *
max|kiln|. Without torch it prints "skipped" and exits 0.
"""
import argparse
import os
import sys


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
    except ImportError:
        print("check_pytorch_interop: torch is not installed; skipped")
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_mirror as tm

    tensors, _, cfg = tm.load_checkpoint(args.checkpoint)
    # kiln's logits and the inputs it saw.
    kiln_logits, _, images = tm.kiln_eval_dump(args.kiln_eval, args.checkpoint, args.data_dir,
                                               test_limit=args.test_limit)
    model = cfg["model"]
    try:
        net = tm.build_model(cfg, images.shape[1], images[0].numel(), kiln_logits.shape[1])
    except ValueError as e:
        print("check_pytorch_interop: %s" % e)
        return 1
    net.load_state_dict(tm.model_state(tensors), strict=True)
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
