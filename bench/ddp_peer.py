"""PyTorch DDP peer for bench/ddp-scaling.sh: the same timm model, per-rank
batch and SGD as our run, under torchrun with Gloo on the CPU (or as one
plain process). Prints images per second over all ranks and the share of
step time that gradient synchronisation costs (a DDP step against the same
step under `no_sync()`, which skips the all-reduce).

Usage: [torchrun --nproc-per-node N] ddp_peer.py MODEL INPUT_SIZE BATCH STEPS THREADS"""
import os
import sys
import time

import timm
import torch
import torch.distributed as dist


def timed_steps(model, sgd, x, y, steps, sync):
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(steps):
        sgd.zero_grad(set_to_none=True)
        if sync or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
            loss_fn(model(x), y).backward()
        else:
            with model.no_sync():
                loss_fn(model(x), y).backward()
        sgd.step()
    return time.perf_counter() - start


def main():
    name, size, batch, steps, threads = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    kwargs = {"img_size": size} if name.startswith(("vit", "swin")) else {}
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).train()
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))
    timed_steps(model, sgd, x, y, 3, True)  # warm-up
    synced = timed_steps(model, sgd, x, y, steps, True)
    alone = timed_steps(model, sgd, x, y, steps, False) if world > 1 else synced
    if int(os.environ.get("RANK", "0")) == 0:
        share = max(0.0, (synced - alone) / synced)
        print(f"{world * batch * steps / synced:.1f} img/s, all-reduce {100 * share:.1f}% of step time")
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
