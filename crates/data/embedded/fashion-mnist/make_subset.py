#!/usr/bin/env python3
"""Cut the embedded Fashion-MNIST subset out of Debian's `dataset-fashion-mnist` package.

Usage: apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb pkg
       python3 make_subset.py pkg/usr/share/datasets/fashion-mnist .
Keeps the first 10,000 training and the first 2,000 test examples, in IDX format (gzip).
"""
import gzip, struct, sys, os

def cut(src, dst, n):
    with gzip.open(src, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    header_len = 4 + 4 * ndim
    per_item = 1
    for d in dims[1:]:
        per_item *= d
    body = data[header_len:header_len + n * per_item]
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * ndim, n, *dims[1:])
    with gzip.GzipFile(dst, "wb", mtime=0) as f:
        f.write(header + body)

src, out = sys.argv[1], sys.argv[2]
for name, n in [("train-images-idx3-ubyte", 10000), ("train-labels-idx1-ubyte", 10000),
                ("t10k-images-idx3-ubyte", 2000), ("t10k-labels-idx1-ubyte", 2000)]:
    cut(os.path.join(src, name + ".gz"), os.path.join(out, name + ".gz"), n)
