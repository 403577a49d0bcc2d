"""A first real collection, the size most users bring: scikit-learn's
handwritten digits (UCI, 1,797 images of 8x8, 10 classes) as 32x32 RGB JPEGs
in the ClsLMSSLDataset layout, split as the issue that asked for it did:
130 labeled (13 per class), 1,165 unlabeled, 143 val, 359 test. Also prints
the one-line baselines on the same labels (8x8 grey pixels).

Usage: python make_small_dataset.py OUT_DIR [--seed N] [--csv digits.csv.gz]
(the CSV defaults to the one inside an installed scikit-learn), or
python make_small_dataset.py --baseline-only DIR: the 1-NN test top-1 (%)
on the raw 8x8 pixels of a dataset made by this script.
"""
import argparse
import gzip
import os

import numpy as np
from PIL import Image

SPLITS = {"train": 130, "unlabeled": 1165, "val": 143, "test": 359}


def load(csv):
    if csv is None:
        import sklearn.datasets
        digits = sklearn.datasets.load_digits()
        return digits.data.reshape(-1, 8, 8), digits.target
    rows = np.loadtxt(gzip.open(csv), delimiter=",")
    return rows[:, :64].reshape(-1, 8, 8), rows[:, 64].astype(int)


def stratified(labels, rng):
    """Indices per split, each split's classes as balanced as the counts allow."""
    order = rng.permutation(len(labels))
    by_class = [list(order[labels[order] == c]) for c in range(10)]
    out = {}
    for split, count in SPLITS.items():
        picked = []
        while len(picked) < count:
            for c in range(10):
                if by_class[c] and len(picked) < count:
                    picked.append(by_class[c].pop())
        out[split] = picked
    return out


def nearest_neighbour(images, labels, train, test):
    """1-NN test accuracy on the raw 8x8 grey pixels."""
    x = images.reshape(len(images), -1)
    d = ((x[test, None, :] - x[None, train, :]) ** 2).sum(-1)
    return (labels[train][d.argmin(1)] == labels[test]).mean()


def listed(out, name):
    """The image indices a split file of this script lists."""
    with open(os.path.join(out, name)) as f:
        return [int(line.split()[0][len("images/"):-len(".jpg")]) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv")
    ap.add_argument("--baseline-only", action="store_true")
    args = ap.parse_args()
    images, labels = load(args.csv)
    if args.baseline_only:
        nn = nearest_neighbour(images, labels, listed(args.out, "train.txt"), listed(args.out, "test.txt"))
        print(f"{100 * nn:.1f}")
        return
    splits = stratified(labels, np.random.default_rng(args.seed))
    os.makedirs(os.path.join(args.out, "images"), exist_ok=False)
    with open(os.path.join(args.out, "label.txt"), "w") as f:
        f.writelines(f"{c} digit {c}\n" for c in range(10))
    for split, indices in splits.items():
        lines = []
        for i in indices:
            grey = (images[i] * 255 / 16).astype(np.uint8)
            rgb = Image.fromarray(grey).resize((32, 32), Image.BILINEAR).convert("RGB")
            path = f"images/{i:04d}.jpg"
            rgb.save(os.path.join(args.out, path), quality=90)
            lines.append(path if split == "unlabeled" else f"{path} {labels[i]}")
        name = "train_unlabeled.txt" if split == "unlabeled" else f"{split}.txt"
        with open(os.path.join(args.out, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    nn = nearest_neighbour(images, labels, splits["train"], splits["test"])
    print(f"{args.out}: {', '.join(f'{k} {len(v)}' for k, v in splits.items())}; "
          f"1-NN on 8x8 grey pixels, test: {100 * nn:.1f}%")


if __name__ == "__main__":
    main()
