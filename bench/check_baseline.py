"""Baseline for bench/check-throughput.sh: decode every image a dataset lists
with Pillow (EXIF transpose + convert("RGB"), as a careful Python checker
would), in N worker processes. Prints one line: `<images> <seconds>`."""
import sys
import time
from multiprocessing import Pool
from pathlib import Path

from PIL import Image, ImageOps


def listed(root: Path):
    paths = set()
    for name in ("train.txt", "val.txt", "test.txt"):
        f = root / name
        if f.exists():
            for line in f.read_text(encoding="utf-8-sig").splitlines():
                if line.strip():
                    paths.add(line.strip().rsplit(maxsplit=1)[0])
    f = root / "train_unlabeled.txt"
    for line in f.read_text(encoding="utf-8-sig").splitlines():
        if line.strip():
            paths.add(line.strip())
    return sorted(str(root / p) for p in paths)


def decode(path):
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return im.size


def main():
    root, workers = Path(sys.argv[1]), int(sys.argv[2])
    start = time.perf_counter()
    files = listed(root)
    with Pool(workers) as pool:
        for _ in pool.imap_unordered(decode, files, chunksize=256):
            pass
    print(len(files), time.perf_counter() - start)


if __name__ == "__main__":
    main()
