#!/usr/bin/env python3
"""Writes the small real MNIST subset the tests use (tests/data/mnist/): the first 2000 training
and first 500 test images and labels, cut from the original IDX files (raw or .gz) with their
headers rewritten to the new counts, gzipped with a fixed mtime so the output is reproducible.

    scripts/make_mnist_subset.py [--src data/mnist] [--out tests/data/mnist] [--train 2000] [--test 500]
"""
import argparse
import gzip
import os
import struct
import sys


def read_idx(src_dir, base):
    for name in (base, base + ".gz"):
        path = os.path.join(src_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                raw = f.read()
            return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    sys.exit(f"make_mnist_subset: {base}[.gz] not found in {src_dir} (run scripts/fetch_data.sh)")


def cut(data, count):
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = list(struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim]))
    if count > dims[0]:
        sys.exit(f"make_mnist_subset: asked for {count} records, file has {dims[0]}")
    row = 1
    for d in dims[1:]:
        row *= d
    header = 4 + 4 * ndim
    dims[0] = count
    return struct.pack(">I", magic) + struct.pack(">" + "I" * ndim, *dims) + data[header:header + count * row]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="data/mnist")
    ap.add_argument("--out", default="tests/data/mnist")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--test", type=int, default=500)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for prefix, count in (("train", a.train), ("t10k", a.test)):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            base = f"{prefix}-{kind}"
            out = os.path.join(a.out, base + ".gz")
            with open(out, "wb") as f:
                # mtime=0 and no file name in the header: byte-identical output on every run.
                with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as g:
                    g.write(cut(read_idx(a.src, base), count))
            print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
