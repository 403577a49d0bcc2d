"""Single-image latency of an exported model the Python way: Pillow decodes
and preprocesses (the spec read from the model's metadata_props), Python
onnxruntime runs it with 2 intra-op threads at batch 1. The counterpart of
bench/src/bin/export-latency.rs, on the same files.

  python bench/export_latency.py MODEL.onnx ROUNDS IMAGE...

Prints the median and the mean milliseconds per image."""
import json
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


def preprocess(path, spec):
    img = Image.open(path).convert("RGB")
    scale = spec["resize"] / min(img.size)
    size = (round(img.width * scale), round(img.height * scale))
    resample = Image.BICUBIC if spec["interpolation"] == "bicubic" else Image.BILINEAR
    img = img.resize(size, resample)
    crop = spec["crop"]
    left, top = round((img.width - crop) / 2), round((img.height - crop) / 2)
    img = img.crop((left, top, left + crop, top + crop))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32)
    return x.transpose(2, 0, 1)[None]


def main():
    model, rounds, images = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    spec = json.loads(session.get_modelmeta().custom_metadata_map["preprocess"])
    name = session.get_inputs()[0].name

    def classify(path):
        logits = session.run(None, {name: preprocess(path, spec)})[0]
        return int(logits.argmax())

    for path in images[:5]:
        classify(path)
    times = []
    for _ in range(rounds):
        for path in images:
            start = time.perf_counter()
            classify(path)
            times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    print(f"{times[len(times) // 2]:.3f} {sum(times) / len(times):.3f}")


if __name__ == "__main__":
    main()
