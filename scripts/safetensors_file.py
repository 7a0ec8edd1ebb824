"""Reads a safetensors file (kiln's checkpoints) without torch: the scripts' one reader."""
import json
import struct


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
