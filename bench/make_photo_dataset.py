"""Builds a synthetic dataset of photo-sized JPEGs (640x480, 4:2:0, quality
90) for bench/check-throughput.sh, so the benchmark also measures images of
the size users bring, not only 28x28 Fashion-MNIST."""
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main():
    out, count = Path(sys.argv[1]), int(sys.argv[2])
    if (out / "val.txt").exists():
        return
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:480, 0:640]
    lines = []
    for i in range(count):
        base = (np.sin(xx / (20 + i % 17)) + np.cos(yy / (15 + i % 13))) * 60 + 128
        noise = rng.normal(0, 18, size=(480, 640, 3))
        pixels = np.clip(base[..., None] + noise + [i % 50, 0, 40], 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(out / f"images/{i:05}.jpg", quality=90)
        lines.append(f"images/{i:05}.jpg {i % 4}")
    # The class names of bench/src/bin/random-checkpoint.rs, so its
    # checkpoints calibrate on this dataset (int8 exports check the classes).
    (out / "label.txt").write_text("0 class0\n1 class1\n2 class2\n3 class3\n")
    half = count // 2
    (out / "train.txt").write_text("\n".join(lines[: half // 2]) + "\n")
    (out / "val.txt").write_text("\n".join(lines[half // 2 : half]) + "\n")
    (out / "train_unlabeled.txt").write_text(
        "\n".join(l.rsplit(maxsplit=1)[0] for l in lines[half:]) + "\n"
    )


if __name__ == "__main__":
    main()
