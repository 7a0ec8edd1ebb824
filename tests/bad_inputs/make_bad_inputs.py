#!/usr/bin/env python3
"""Generates the bad-data corpus for the dataset loaders (tests/bad_inputs/idx/, .../cifar/).

Each case is a directory usable as --data-dir: idx/<case>/mnist/ holds the four MNIST files
(tiny but valid) with one of them broken; cifar/<case>/cifar10/ holds the six CIFAR-10 batches
(one record each) with one broken. Each case also has `expect`: line 1 the exit code the apps
must give (1 = runtime error), line 2 a substring the one-line error must contain (a file name
and what is wrong). Deterministic: re-running rewrites identical bytes.

    tests/bad_inputs/make_bad_inputs.py      (from the repository root or anywhere)
"""
import gzip
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def idx(dims, payload=None, magic=None):
    if magic is None:
        magic = 0x800 | len(dims)
    n = 1
    for d in dims:
        n *= d
    if payload is None:
        payload = bytes((i * 7 + 3) % 256 for i in range(n))
    return struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims) + payload


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


N = 3  # images per valid file
GOOD_IMAGES = idx([N, 28, 28])
GOOD_LABELS = idx([N], bytes([1, 7, 3]))

# case -> (file to break, its bytes, expected message substring)
IDX_CASES = {
    "empty": ("train-images-idx3-ubyte", b"", "empty file"),
    "truncated": ("train-images-idx3-ubyte", GOOD_IMAGES[:16 + 1000],
                  "truncated: expected 2352 bytes of data after the 16-byte header, found 1000"),
    "truncated_header": ("train-images-idx3-ubyte", GOOD_IMAGES[:10], "header truncated"),
    "wrong_magic": ("train-images-idx3-ubyte", b"PK\x03\x04" + GOOD_IMAGES[4:], "bad IDX magic"),
    "wrong_type": ("train-images-idx3-ubyte", idx([N, 28, 28], magic=0x0D03, payload=b"\0" * N * 784 * 4),
                   "unsupported IDX element type 0xd"),
    "wrong_ndim": ("train-images-idx3-ubyte", GOOD_IMAGES[:3] + b"\x09" + GOOD_IMAGES[4:],
                   "declares 9 dimensions"),
    "wrong_dims": ("train-images-idx3-ubyte", idx([N, 27, 28]), "expected [1, 28, 28]"),
    "wrong_rank": ("train-images-idx3-ubyte", idx([N, 784]), "expected an image file"),
    "wrong_count": ("train-labels-idx1-ubyte", idx([N - 1], bytes([1, 2])), "holds 2 labels"),
    "bad_label": ("train-labels-idx1-ubyte", idx([N], bytes([1, 10, 3])), "label 10 of record 1"),
    # Header claims 2e9 x 1 x 1 bytes; the loader must fail without allocating them (the labels'
    # header refuses it before its length is looked at).
    "oversized_header": ("train-images-idx3-ubyte", idx([2000000000, 1, 1], payload=b"\0" * 64),
                         "holds 2000000000 images but"),
    # A gzip's length says nothing of what it inflates to: its header is refused before any
    # data is read (the old loader read on and said "truncated: expected 23520000 bytes").
    "gz_header_before_data": ("train-images-idx3-ubyte.gz", gz(idx([N, 2800, 2800], payload=b"\0" * 64)),
                              "images are [1, 2800, 2800], expected [1, 28, 28]"),
    "absurd_dims": ("train-images-idx3-ubyte", idx([0x7FFFFFFF, 0x7FFFFFFF, 28], payload=b""),
                    "dimension 1 at byte 8 (2147483647) brings the element count past 1e10"),
    "huge_dim": ("train-images-idx3-ubyte", struct.pack(">IIII", 0x803, 0xFFFFFFFF, 28, 28),
                 "larger than a signed 32-bit size"),
    "trailing_bytes": ("train-images-idx3-ubyte", GOOD_IMAGES + b"\0" * 5, "5 trailing bytes"),
    "truncated_gz": ("train-images-idx3-ubyte.gz", gz(GOOD_IMAGES)[:200], "truncated gzip stream"),
    # Byte 10 starts the deflate data; 0xff declares the reserved block type 3.
    "corrupt_gz": ("train-images-idx3-ubyte.gz", gz(GOOD_IMAGES)[:10] + b"\xff" + gz(GOOD_IMAGES)[11:],
                   "corrupt gzip data"),
    # The payload inflates fine but the CRC-32 in the gzip trailer is wrong.
    "bad_crc_gz": ("train-images-idx3-ubyte.gz", gz(GOOD_IMAGES)[:-8] + b"\0\0\0\0" + gz(GOOD_IMAGES)[-4:],
                   "incorrect data check"),
}

REC = 3073


def cifar_record(i, label=None):
    lab = i % 10 if label is None else label
    return bytes([lab]) + bytes((i * 31 + k * 5) % 256 for k in range(3072))


CIFAR_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
CIFAR_CASES = {
    "empty": ("data_batch_1.bin", b"", "empty file"),
    "not_multiple": ("data_batch_1.bin", cifar_record(0) + cifar_record(1)[:100],
                     "record 1 (at byte 3073) has only 100 bytes"),
    "bad_label": ("data_batch_2.bin", cifar_record(0) + cifar_record(1, label=10),
                  "record 1 (at byte 3073) has label 10"),
    "truncated_gz": ("data_batch_1.bin", gz(cifar_record(0) + cifar_record(1))[:300],
                     "truncated gzip stream"),
}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_case(root, case, sub, good_files, broken_name, broken_bytes, expect):
    d = os.path.join(root, case)
    shutil.rmtree(d, ignore_errors=True)
    for name, data in good_files.items():
        if name != broken_name.removesuffix(".gz"):
            write(os.path.join(d, sub, name), data)
    write(os.path.join(d, sub, broken_name), broken_bytes)
    write(os.path.join(d, "expect"), f"1\n{expect}\n".encode())


def main():
    mnist = {
        "train-images-idx3-ubyte": GOOD_IMAGES, "train-labels-idx1-ubyte": GOOD_LABELS,
        "t10k-images-idx3-ubyte": GOOD_IMAGES, "t10k-labels-idx1-ubyte": GOOD_LABELS,
    }
    for case, (name, data, expect) in IDX_CASES.items():
        make_case(os.path.join(HERE, "idx"), case, "mnist", mnist, name, data, expect)
    cifar = {name: cifar_record(i) for i, name in enumerate(CIFAR_FILES)}
    for case, (name, data, expect) in CIFAR_CASES.items():
        make_case(os.path.join(HERE, "cifar"), case, "cifar10", cifar, name, data, expect)


if __name__ == "__main__":
    main()
