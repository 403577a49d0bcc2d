"""The Python halves of scripts/gpu-check.sh (stdlib, torch, timm, safetensors).

train TEMPLATE OUT STEPS DEVICE: a few SGD steps of the template's model
  (timm's lcnet_050: our checkpoints use timm's names) on DEVICE, with the
  GPU machine's own PyTorch; saves the weights under the template's names and
  checkpoint metadata, so our exporter packages them; prints step timings.
bench URL TOKEN MODEL_ID SECONDS OUT_JSON: latency of one request at a time,
  then throughput with 8 clients, against semiclass-serve.
"""

import io
import json
import statistics
import sys
import threading
import time
import urllib.request


def train(template, out, steps, device):
    import timm
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(template, "pt") as f:
        metadata = f.metadata()
    meta = json.loads(metadata["semiclass"])
    tensors = load_file(template)
    classes = len(meta["class_names"])
    model = timm.create_model(meta["model"], num_classes=classes)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"{template}: names differ from timm's {meta['model']}: {missing} {unexpected}")
    model.to(device).train()
    size = meta["input_size"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(64, 3, size, size, device=device)
    y = torch.randint(0, classes, (64,), device=device)
    times = []
    for _ in range(int(steps)):
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k in tensors}
    save_file(state, out, metadata=metadata)
    print(json.dumps({
        "device": str(torch.cuda.get_device_name(0)) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "steps": len(times), "last_loss": loss.item(),
        "first_step_s": times[0], "median_step_s": statistics.median(times[1:] or times),
    }))


def png():
    """A 64x48 gradient PNG, written without Pillow (zlib + struct)."""
    import struct
    import zlib
    w, h = 64, 48
    rows = b"".join(b"\0" + bytes((x * 4 % 256, y * 5 % 256, 128) [c] for x in range(w) for c in range(3)) for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def bench(url, token, model_id, seconds, out):
    body = png()
    target = f"{url}/v1/models/{model_id}/predict?topk=3"
    def call():
        request = urllib.request.Request(target, data=body, method="POST", headers={
            "authorization": f"Bearer {token}", "content-type": "image/png"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
            assert answer.status == 200, answer.status
        return time.perf_counter() - started
    for _ in range(10):
        call()
    seconds = float(seconds)
    latencies = []
    end = time.perf_counter() + seconds / 2
    while time.perf_counter() < end:
        latencies.append(call())
    latencies.sort()
    done = []
    end = time.perf_counter() + seconds / 2
    def client():
        n = 0
        while time.perf_counter() < end:
            call()
            n += 1
        done.append(n)
    threads = [threading.Thread(target=client) for _ in range(8)]
    started = time.perf_counter()
    [t.start() for t in threads]
    [t.join() for t in threads]
    result = {
        "sequential_requests": len(latencies),
        "latency_p50_ms": 1e3 * latencies[len(latencies) // 2],
        "latency_p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "throughput_8_clients_per_s": sum(done) / (time.perf_counter() - started),
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    {"train": train, "bench": bench}[sys.argv[1]](*sys.argv[2:])
