"""A peer, side by side: USB's FixMatch (semilearn 0.3.2) and `semiclass
train --mode large` (FixMatch) on the same images, labels, architecture,
wall-clock budget and threads (bench/usb-peer.sh; issue 15, Deliver 3).

Run with the bench-only venv (bench/usb-peer.sh makes it):
    python bench/usb_peer.py --data DIR [--budget 1800] [--seed 0]
        [--threads 2] [--semiclass target/release/semiclass] [--runs DIR]

Protocol
--------
* Data: the dataset folder's own list files (train.txt labeled,
  train_unlabeled.txt, val.txt, test.txt; README "dataset format"). USB gets
  them through its own `BasicDataset`, holding the decoded images in memory
  as its CIFAR loader holds its arrays (semiclass caches decoded images too,
  `data.cache_mb`); the decoding happens before either clock starts. USB's
  unlabeled set is train_unlabeled.txt only (its `include_lb_to_ulb` adds the
  labeled images; ours does not, so neither does the peer here).
* Model: timm's `resnet18`, random init, 10 classes, 32 px input with the
  ImageNet stem: semiclass's default large model (trainer/src/config/
  train.rs: resnet18, input_size 32, stem auto = ImageNet for ResNet). USB
  builds it through `timm.create_model` behind the `{'logits', 'feat'}`
  interface its algorithms call.
* Algorithm: FixMatch from random weights on both sides: USB's
  `semilearn.algorithms.fixmatch.FixMatch` with its own train loop
  (`AlgorithmBase.train`), hooks (parameter update, EMA, evaluation,
  checkpoint, logging), losses, fixed threshold, RandAugment and CIFAR
  transforms, at the values of USB's config/classic_cv/fixmatch/*.yaml
  (batch 64, uratio 7, SGD lr 0.03 momentum 0.9 Nesterov, wd 5e-4, EMA
  0.999, p_cutoff 0.95, hard labels, lambda_u 1, use_cat, no AMP, no clip,
  no warm-up); ours: `semiclass train --mode large -o large.steps=0`
  (no supervised warm start: the same recipe as USB's) with
  `large.ssl.steps=N -o large.ssl.mu=7`, every other key at its default.
  `--pipeline` adds a third row: ours as the product runs it (supervised
  warm start, `--warm-share` of the budget, then FixMatch).
* Budget: BUDGET seconds of training per side. Neither side has a
  wall-clock option (semiclass sizes stages in steps: README "How long each
  stage runs"; USB's cosine needs num_train_iter up front), so each side is
  calibrated first, in this same invocation: a short run of CAL steps,
  seconds per step = median over its 10-step log intervals; then
  N = BUDGET / (seconds per step). The table shows the wall clock each side
  really took (training loop, and the whole run with start-up and
  evaluations).
* Evaluations: EVALS (5) on val.txt per side, evenly spaced (USB:
  num_eval_iter = N / EVALS, plus its last iteration; ours:
  `large.evals_per_stage`), the best by val is kept, test.txt is evaluated
  once on it (USB: its EvaluationHook.after_run: model_best.pth then
  evaluate('test'); ours: summary.json's test_top1).
* images/s: labeled + unlabeled images per second of training, each
  unlabeled image counted once (its weak and strong views are one image):
  (B + mu B) images per step; the median over 10-step log intervals after
  the first (ours: metrics.csv's images_per_s, which counts the same
  images; USB: the same intervals timed by a CPU hook). The median keeps an
  interval holding an evaluation out of both.
* Threads: torch.set_num_threads(THREADS) for USB (its data loader workers:
  USB's num_workers 1, i.e. 1 labeled + 2 unlabeled worker processes);
  `run.threads=THREADS` for ours (and its own `data.workers` 2 threads).
* USB's EMA starts at the random weights and decays at 0.999 from step 1:
  after k steps 0.999^k of the random start is still in it (37% at 1,000
  steps, 5% at 3,000). Its configs train a million steps; at a budget of a
  few thousand steps its EMA model is partly untrained, which USB's test
  figure shows. `--usb-ema-m 0.99` is the knob for a second look; the
  default is USB's own value.
* Seed: the same SEED (USB: random, numpy and torch seeded as its
  train.py does; ours: `run.seed`). The two draw different batches and
  augmentations all the same: the runs are not paired.

What USB needs on a CPU, and nothing else is changed in it: its TimerHook
records torch.cuda.Event (no CUDA here), replaced by the same hook timed
with time.perf_counter; `Tensor.cuda` (process_batch, evaluate) is the
identity when CUDA is absent.

USB's FixMatch against the paper (Sohn et al. 2020, CIFAR) and ours
--------------------------------------------------------------------
Paper: mu 7, B 64, tau 0.95, lambda_u 1, T 1 (hard labels), SGD Nesterov
momentum 0.9 lr 0.03, wd 5e-4, cosine lr = lr cos(7 pi k / 16 K), EMA of
the weights for evaluation, RandAugment (N 2, random magnitudes) + Cutout.

                  paper             USB 0.3.2 (as run)         semiclass (as run)
  mu, B           7, 64             7, 64                      7, 64 (set; default: 7
                                                               unless the unlabeled set is small)
  tau             0.95              0.95, on softmax(T 1)      0.95, on softmax(T 1)
  pseudo-labels   hard              hard (T 0.5 in its config,  hard
                                    unused with hard labels)
  forward         -                 one train-mode forward     one train-mode forward
                                    over lb+weak+strong        over lb+weak+strong
                                    (use_cat), weak detached   (teacher live), weak detached
  unsup loss      mean over mu B    CE x mask, mean over mu B  the same
  optimizer       SGD Nesterov .9   SGD Nesterov .9            SGD Nesterov .9
  weight decay    5e-4              5e-4, not on biases and    5e-4 on tensors of rank >= 2
                                    1-d params (BN)            (not biases, not BN): the same
  lr schedule     cos(7 pi k/16K)   the same, no warm-up       5% linear warm-up, then a half
                                    (ends at 0.2 lr)           cosine to 0
  EMA             0.999             0.999 from step 1, on      0.999 with timm's warm-up
                                    parameters only; BN        (1 - (1+k)^-2/3: 0.99 at step
                                    buffers copied from the    1000, 0.999 at 31.6k), on
                                    live model                 parameters and BN buffers
  strong aug      RA N 2 + Cutout   RandAugment(3, 5): 3 ops   2 ops (FixMatch's N), USB's
                                    + Cutout (<= 0.5 side,     op list and ranges, Cutout
                                    colour 125,123,114)        the same
  weak aug        flip + crop       resize, reflect-pad 4,     the same crop; flips unless
                                    crop 32, flip              `data.flip: auto` finds mirrors
                                                               lose their class (Fashion-MNIST
                                                               at 10%: 60% vs 78% by nearest
                                                               neighbour, so it flips too)
  normalise       -                 ImageNet mean/std          ImageNet mean/std (timm's)
  init            -                 timm resnet18: convs       the same for convs and BN
                                    kaiming-normal fan-out,    (trainer/src/nn/network.rs)
                                    each block's last BN
                                    gamma 0
  test model      EMA               EMA params of the LAST     the best-by-val EMA checkpoint
                                    step + BN buffers of the   (params and buffers)
                                    best-by-val checkpoint (its
                                    after_run loads the best,
                                    then applies the live EMA
                                    shadow); the table also
                                    shows the best checkpoint's
                                    own EMA model
"""
import argparse
import csv
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time

BATCH = 64
MU = 7
LOG_EVERY = 10
# ImageNet's, timm's for resnet18 and USB's `mean['cifar10']`.
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# ---------------------------------------------------------------- the data

def read_list(data, name, labeled):
    """(path, label) pairs of a list file; the label is after the last
    whitespace (paths may hold spaces); label None when unlabeled."""
    items = []
    with open(os.path.join(data, name), encoding="utf-8-sig") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if labeled:
                path, label = line.rsplit(None, 1)
                items.append((path.strip(), int(label)))
            else:
                items.append((line, None))
    return items


def decode(data, items):
    """Images as USB's CIFAR arrays hold them: N x H x W x 3 uint8 (every
    image here has the same size)."""
    import numpy as np
    from PIL import Image
    images = [np.asarray(Image.open(os.path.join(data, p)).convert("RGB")) for p, _ in items]
    return np.stack(images)


def num_classes(data):
    with open(os.path.join(data, "label.txt"), encoding="utf-8-sig") as f:
        return sum(1 for line in f if line.strip())


# ------------------------------------------------------------- USB's side

def usb_datasets(data, img_size, crop_ratio):
    """USB's dataset dict from our list files, with its CIFAR transforms."""
    import numpy as np
    from torchvision import transforms
    from semilearn.datasets.augmentation import RandAugment
    from semilearn.datasets.cv_datasets.datasetbase import BasicDataset

    pad = int(img_size * (1 - crop_ratio))
    weak = transforms.Compose([
        transforms.Resize(img_size),
        transforms.RandomCrop(img_size, padding=pad, padding_mode="reflect"),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    strong = transforms.Compose([
        transforms.Resize(img_size),
        transforms.RandomCrop(img_size, padding=pad, padding_mode="reflect"),
        transforms.RandomHorizontalFlip(),
        RandAugment(3, 5),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    val = transforms.Compose([
        transforms.Resize(img_size),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    classes = num_classes(data)
    lb = read_list(data, "train.txt", True)
    ulb = read_list(data, "train_unlabeled.txt", False)
    ev = read_list(data, "val.txt", True)
    te = read_list(data, "test.txt", True)

    def targets(items):
        return np.array([label for _, label in items], dtype=np.int64)

    return {
        "train_lb": BasicDataset("fixmatch", decode(data, lb), targets(lb), classes, weak, False, None, False),
        "train_ulb": BasicDataset("fixmatch", decode(data, ulb), None, classes, weak, True, strong, False),
        "eval": BasicDataset("fixmatch", decode(data, ev), targets(ev), classes, val, False, None, False),
        "test": BasicDataset("fixmatch", decode(data, te), targets(te), classes, val, False, None, False),
    }


def timm_net_builder(model):
    """A `net_builder` as USB's algorithms call it: a timm model answering
    `{'logits', 'feat'}` (and `only_feat`, `only_fc`) like USB's own nets."""
    import timm
    import torch.nn as nn

    class TimmNet(nn.Module):
        def __init__(self, num_classes, pretrained=False, pretrained_path=None, **_):
            super().__init__()
            if pretrained:
                raise SystemExit("the peer trains from random weights, as ours does")
            self.backbone = timm.create_model(model, pretrained=False, num_classes=num_classes)

        def forward(self, x, only_fc=False, only_feat=False, **_):
            head = self.backbone.get_classifier()
            if only_fc:
                return head(x)
            feat = self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True)
            if only_feat:
                return feat
            return {"logits": head(feat), "feat": feat}

    return TimmNet


def usb_config(opts, steps, save_dir, classes, lb_len):
    from semilearn import get_config
    # USB's config/classic_cv/fixmatch/fixmatch_cifar10_4000_0.yaml, but
    # for the net, the dataset, the length, the device and the paths.
    return get_config({
        "algorithm": "fixmatch", "save_dir": save_dir, "save_name": "usb", "resume": False,
        "overwrite": True, "use_tensorboard": False, "use_wandb": False, "use_aim": False,
        "epoch": 1, "num_train_iter": steps, "num_warmup_iter": 0,
        "num_eval_iter": max(1, steps // opts.evals) if opts.evals else 0,
        "num_log_iter": LOG_EVERY,
        "num_labels": lb_len, "batch_size": BATCH, "eval_batch_size": 256,
        "hard_label": True, "T": 0.5, "p_cutoff": 0.95, "ulb_loss_ratio": 1.0, "uratio": MU,
        "ema_m": opts.usb_ema_m, "crop_ratio": 0.875, "img_size": 32,
        "optim": "SGD", "lr": 0.03, "momentum": 0.9, "weight_decay": 5e-4, "layer_decay": 1.0,
        "amp": False, "clip_grad": 0.0, "use_cat": True,
        "net": "timm_" + opts.model, "net_from_name": False, "use_pretrain": False,
        "data_dir": opts.data, "dataset": "semiclass", "train_sampler": "RandomSampler",
        "num_classes": classes, "num_workers": 1, "include_lb_to_ulb": False,
        "seed": opts.seed, "world_size": 1, "rank": 0, "multiprocessing_distributed": False,
        "distributed": False, "gpu": None,
    })


def usb_run(opts, datasets, steps, tag):
    """USB's FixMatch for `steps` steps; (step times, eval seconds, results)."""
    import numpy as np
    import torch
    from semilearn.algorithms.fixmatch import FixMatch
    from semilearn.core.hooks import Hook

    if not torch.cuda.is_available():
        # process_batch and evaluate move every batch with .cuda(gpu).
        torch.Tensor.cuda = lambda self, *a, **k: self

    class CpuTimerHook(Hook):
        """USB's TimerHook (learning rate, prefetch time into log_dict)
        timed on the CPU; also keeps every step's end time."""

        def before_run(self, algorithm):
            algorithm.step_ends = []
            self.batch_start = time.perf_counter()

        def before_train_step(self, algorithm):
            self.prefetch = time.perf_counter() - self.batch_start

        def after_train_step(self, algorithm):
            algorithm.log_dict["lr"] = algorithm.optimizer.param_groups[-1]["lr"]
            algorithm.log_dict["train/prefetch_time"] = self.prefetch
            algorithm.step_ends.append(time.perf_counter())
            self.batch_start = time.perf_counter()

    class PeerFixMatch(FixMatch):
        calibrating = opts.evals == 0

        def set_dataset(self):
            self.args.ulb_dest_len = len(datasets["train_ulb"])
            self.args.lb_dest_len = len(datasets["train_lb"])
            return datasets

        def set_hooks(self):
            super().set_hooks()
            # A calibration run times steps: no evaluation, no checkpoint.
            drop = {"TimerHook"} | ({"EvaluationHook", "CheckpointHook"} if self.calibrating else set())
            self._hooks = [h for h in self._hooks if h.name not in drop]
            self.register_hook(CpuTimerHook(), "TimerHook", "LOW")

        def evaluate(self, eval_dest="eval", *a, **k):
            start = time.perf_counter()
            try:
                return super().evaluate(eval_dest, *a, **k)
            finally:
                self.eval_seconds = getattr(self, "eval_seconds", 0.0) + time.perf_counter() - start

    built = time.perf_counter()
    # As USB's train.py seeds a run.
    random.seed(opts.seed)
    np.random.seed(opts.seed)
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    save_dir = os.path.join(opts.runs, f"usb-{tag}")
    args = usb_config(opts, steps, save_dir, num_classes(opts.data), len(datasets["train_lb"]))
    if opts.evals == 0:
        args.num_eval_iter = steps + 1
    # USB's log lines (losses, mask ratio, evaluations) go to a file.
    os.makedirs(save_dir, exist_ok=True)
    logger = logging.getLogger(f"usb-{tag}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(os.path.join(save_dir, "log.txt"))
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s"))
    logger.addHandler(handler)
    algorithm = PeerFixMatch(args, timm_net_builder(opts.model), tb_log=None, logger=logger)
    start = time.perf_counter()
    algorithm.train()
    wall = time.perf_counter() - built
    results = getattr(algorithm, "results_dict", {})
    if opts.evals:
        # The best-by-val checkpoint's own EMA model (what a user deploys).
        ckpt = torch.load(os.path.join(save_dir, "usb", "model_best.pth"), map_location="cpu")
        algorithm.model.load_state_dict(ckpt["ema_model"])
        algorithm.ema.register()
        results["test/best_ckpt_ema"] = algorithm.evaluate("test")["test/top-1-acc"]
    return algorithm.step_ends, getattr(algorithm, "eval_seconds", 0.0), wall, results, start


def interval_rates(ends, start, images_per_step):
    """images/s of each LOG_EVERY-step interval after the first."""
    marks = [start] + ends
    rates = []
    for i in range(2 * LOG_EVERY, len(marks), LOG_EVERY):
        rates.append(LOG_EVERY * images_per_step / (marks[i] - marks[i - LOG_EVERY]))
    return rates


# ------------------------------------------------------------- our side

def ours_run(opts, name, overrides, stage="ssl"):
    log = os.path.join(opts.runs, f"{name}.log")
    args = [opts.semiclass, "train", "--mode", "large", "--data", opts.data,
            "-o", f"run.dir={opts.runs}", "-o", f"run.name={name}",
            "-o", f"run.threads={opts.threads}", "-o", f"run.seed={opts.seed}",
            "-o", f"large.model={opts.model}", "-o", "large.input_size=32",
            "-o", f"large.log_interval={LOG_EVERY}"]
    for o in overrides:
        args += ["-o", o]
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.call(args, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if code != 0:
        sys.exit(f"{' '.join(args)} failed ({code}); see {log}")
    run = os.path.join(opts.runs, name)
    rows = [r for r in csv.DictReader(open(os.path.join(run, "metrics.csv")))
            if r["images_per_s"] and float(r["images_per_s"]) > 0]
    ssl = [r for r in rows if r["stage"] == stage]
    rates = [float(r["images_per_s"]) for r in ssl][1:]
    # Seconds of the training loops: each log interval's images over its
    # rate (the step column counts on across stages).
    loop_s, prev = 0.0, 0
    for r in rows:
        step, per = int(r["step"]), BATCH * (1 + MU) if r["stage"] == "ssl" else BATCH
        loop_s += (step - prev) * per / float(r["images_per_s"])
        prev = step
    summary = json.load(open(os.path.join(run, "summary.json")))
    return rates, loop_s, wall, summary


# ------------------------------------------------------------------ main

def main():
    global LOG_EVERY
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="dataset folder (semiclass demo-data ...)")
    ap.add_argument("--budget", type=float, default=1800, help="seconds of training per side")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--evals", type=int, default=5, help="val evaluations per side")
    ap.add_argument("--calibrate", type=int, default=30, help="steps of each calibration run")
    ap.add_argument("--log-every", type=int, default=LOG_EVERY,
                    help="steps per timed interval (both sides); smoke runs on a busy machine: 2")
    ap.add_argument("--semiclass", default="target/release/semiclass")
    ap.add_argument("--runs", default=None)
    ap.add_argument("--pipeline", action="store_true",
                    help="add ours as the product runs it: supervised warm start, then FixMatch")
    ap.add_argument("--warm-share", type=float, default=0.3)
    ap.add_argument("--usb-ema-m", type=float, default=0.999,
                    help="USB's ema_m (its configs: 0.999, from step 1, no warm-up)")
    opts = ap.parse_args()
    LOG_EVERY = opts.log_every
    opts.runs = os.path.abspath(opts.runs or subprocess.check_output(["mktemp", "-d"], text=True).strip())
    os.makedirs(opts.runs, exist_ok=True)
    tag = f"{os.path.basename(os.path.normpath(opts.data))}-s{opts.seed}"
    per_step = BATCH * (1 + MU)
    cal = max(opts.calibrate, 3 * LOG_EVERY)

    # Calibration: ours, then USB, both before either measured run.
    rates, _, _, _ = ours_run(opts, f"ours-cal-{tag}", [
        "large.steps=0", f"large.ssl.steps={cal}", f"large.ssl.mu={MU}", "large.evals_per_stage=1"])
    ours_sps = per_step / statistics.median(rates)
    print(f"decoding {opts.data} for USB ...", flush=True)
    decode_s = time.perf_counter()
    datasets = usb_datasets(opts.data, 32, 0.875)
    decode_s = time.perf_counter() - decode_s
    evals, opts.evals = opts.evals, 0
    ends, _, _, _, start = usb_run(opts, datasets, cal, f"cal-{tag}")
    opts.evals = evals
    usb_sps = per_step / statistics.median(interval_rates(ends, start, per_step))
    ours_steps = max(LOG_EVERY * 3, round(opts.budget / ours_sps))
    usb_steps = max(LOG_EVERY * 3, round(opts.budget / usb_sps))
    print(f"calibration ({cal} steps): ours {ours_sps:.3f} s/step -> {ours_steps} steps, "
          f"USB {usb_sps:.3f} s/step -> {usb_steps} steps", flush=True)
    for side, sps, steps in (("ours", ours_sps, ours_steps), ("USB", usb_sps, usb_steps)):
        if steps * sps > 1.2 * opts.budget:
            print(f"warning: {side} runs {steps} steps, the fewest that give timed intervals, "
                  f"about {steps * sps:.0f} s: the budget is too short for this machine", flush=True)

    rows = []
    ends, usb_eval_s, usb_wall, results, start = usb_run(opts, datasets, usb_steps, tag)
    usb_rates = interval_rates(ends, start, per_step)
    rows.append(("USB 0.3.2 FixMatch", len(ends), statistics.median(usb_rates),
                 ends[-1] - start, usb_wall, 100 * results["test/best_acc"]))
    usb_best_ema = 100 * results["test/best_ckpt_ema"]

    rates, loop_s, wall, summary = ours_run(opts, f"ours-{tag}", [
        "large.steps=0", f"large.ssl.steps={ours_steps}", f"large.ssl.mu={MU}",
        f"large.evals_per_stage={evals}"])
    ssl = [s for s in summary["stages"] if s["stage"] == "ssl"]
    rows.append(("semiclass FixMatch", ssl[0]["steps"] if ssl else 0, statistics.median(rates),
                 loop_s, wall, 100 * summary["test_top1"]))
    if opts.pipeline:
        sup_rates, _, _, _ = ours_run(opts, f"ours-cal-sup-{tag}", [
            f"large.steps={cal}", "large.ssl.algorithm=supervised", "large.evals_per_stage=1"],
            stage="supervised")
        sup_sps = BATCH / statistics.median(sup_rates)
        warm = round(opts.warm_share * opts.budget / sup_sps)
        fix = round((1 - opts.warm_share) * opts.budget / ours_sps)
        rates, loop_s, wall, summary = ours_run(opts, f"ours-pipeline-{tag}", [
            f"large.steps={warm}", f"large.ssl.steps={fix}", f"large.ssl.mu={MU}",
            f"large.evals_per_stage={evals}"])
        steps = sum(s["steps"] for s in summary["stages"])
        rows.append((f"semiclass pipeline ({warm} sup + {fix} FixMatch)", steps,
                     statistics.median(rates), loop_s, wall,
                     100 * summary["test_top1"]))

    print(f"\n{opts.data}: {opts.budget:g} s per side, seed {opts.seed}, {opts.threads} threads, "
          f"{opts.model} at 32 px, B {BATCH}, mu {MU}")
    print(f"{'side':<44} {'steps':>6} {'images/s':>9} {'loop s':>7} {'wall s':>7} {'test top-1':>10}")
    for name, steps, ips, train_s, wall_s, top1 in rows:
        print(f"{name:<44} {steps:>6} {ips:>9.1f} {train_s:>7.0f} {wall_s:>7.0f} {top1:>9.2f}%")
    print(f"images/s ours/USB: {rows[1][2] / rows[0][2]:.2f}x;  "
          f"test top-1 ours - USB: {rows[1][5] - rows[0][5]:+.2f} points")
    print(f"USB's best-by-val checkpoint's own EMA model: {usb_best_ema:.2f}% on test")
    print(f"images/s: (labeled + unlabeled images) per second, median of {LOG_EVERY}-step intervals; "
          "loop s: the training loop with its val evaluations; wall s: the whole run to its "
          f"test figure (USB's without decoding the images into memory: {decode_s:.0f} s, once)")
    result = {"data": opts.data, "budget_s": opts.budget, "seed": opts.seed, "threads": opts.threads,
              "model": opts.model, "usb_best_ckpt_ema_top1": usb_best_ema,
              "rows": [dict(zip(("side", "steps", "images_per_s", "loop_s", "wall_s", "test_top1"), r))
                       for r in rows]}
    with open(os.path.join(opts.runs, f"usb-peer-{tag}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"runs and logs: {opts.runs} (the table: usb-peer-{tag}.json)")


if __name__ == "__main__":
    main()
