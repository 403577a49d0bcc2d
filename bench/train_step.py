"""PyTorch eager baseline for bench/train-step.sh: the same timm model,
batch, loss and SGD (Nesterov, no weight decay on 1-D params) as
target/release/train-step. Prints images per second.

Usage: train_step.py MODEL INPUT_SIZE [BATCH] [STEPS] [THREADS] [fp32|bf16]

bf16 runs the forward pass and the loss under CPU autocast to bfloat16 (the
weights, their gradients and SGD stay fp32), as `torch.autocast("cpu")`
users train; bench/bf16-autocast.sh compares it with fp32."""
import contextlib
import sys
import time

import timm
import torch


def main():
    name, size = sys.argv[1], int(sys.argv[2])
    batch, steps, threads = (int(a) for a in (sys.argv[3:6] + ["64", "10", "2"][len(sys.argv[3:6]):]))
    precision = sys.argv[6] if len(sys.argv) > 6 else "fp32"
    if precision not in ("fp32", "bf16"):
        sys.exit(f"train_step.py: precision must be fp32 or bf16, not {precision!r}")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    kwargs = {"img_size": size} if name.startswith(("vit", "swin")) else {}
    model = timm.create_model(name, pretrained=False, num_classes=1000, **kwargs).train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    sgd = torch.optim.SGD(
        [{"params": decay, "weight_decay": 1e-4}, {"params": no_decay, "weight_decay": 0.0}],
        lr=0.01, momentum=0.9, nesterov=True,
    )
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 1000, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def autocast():
        if precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step():
        sgd.zero_grad(set_to_none=False)
        with autocast():
            loss = loss_fn(model(x), y)
        loss.backward()
        sgd.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    print(f"{batch * steps / (time.perf_counter() - start):.2f}")


if __name__ == "__main__":
    main()
