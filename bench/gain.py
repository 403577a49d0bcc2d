"""What the unlabeled images and the teacher are worth, at equal wall-clock
budgets (bench/ssl-gain.sh, bench/distill-gain.sh).

Every arm gets the same seconds of training, not the same steps: a FixMatch
step costs several supervised steps. The seconds become steps through a
calibration run of each kind of step (images/s from its metrics.csv), made
in the same invocation, so the arms share the machine's state. Warm-up is
the trainer's default share of each stage's steps; test.txt never picks a
checkpoint (val does).

Arms, Fashion-MNIST at each labeled fraction (1% and 10% by default):
  large model (ssl):   (a) supervised on the labels, (b) the large pipeline
                       (supervised warm start, then FixMatch), (c) supervised
                       on 100% of the labels;
  small model (distill): (d) supervised on the labels, (e) distilled offline
                       from (b), (f) distilled online from (b), (g) supervised
                       on 100% of the labels.
(a), (b), (d)-(f) run for every seed; (c) and (g) once (seed 0).

Usage: python bench/gain.py ssl|distill [--budget S] [--seeds 0,1,2]
       [--fractions 0.01,0.1] [--threads 2] [--runs DIR]
"""
import argparse
import csv
import os
import re
import statistics
import subprocess
import sys

SEMICLASS = "target/release/semiclass"
BATCH = 64
MU = 7


def run(args, log):
    with open(log, "w") as out:
        code = subprocess.call([SEMICLASS, *args], stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        sys.exit(f"{SEMICLASS} {' '.join(args)} failed ({code}); see {log}")
    return open(log).read()


def dataset(fraction):
    """The Fashion-MNIST dataset with `fraction` of the train labels."""
    path = "data/fashion-mnist" if fraction == 0.1 else f"data/fashion-mnist-{fraction:g}"
    if not os.path.isdir(path):
        subprocess.check_call([SEMICLASS, "demo-data", "fashion-mnist", path,
                               "--labeled-frac", str(fraction), "--seed", "0"],
                              stdout=subprocess.DEVNULL)
    return path


def test_top1(text, model):
    found = re.search(rf"^{model}: test.txt top-1 ([0-9.]+)%", text, re.M)
    if not found:
        sys.exit(f"no test.txt top-1 for {model} in the log")
    return float(found.group(1))


def images_per_s(metrics, stage):
    rows = [r for r in csv.DictReader(open(metrics)) if r["stage"] == stage and r["images_per_s"]]
    # The first log line includes start-up; the rest are steady state.
    rows = rows[1:] or rows
    return statistics.mean(float(r["images_per_s"]) for r in rows)


class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.common = ["-o", f"run.dir={opts.runs}", "-o", f"run.threads={opts.threads}",
                       "-o", "large.evals_per_stage=5", "-o", "small.evals_per_stage=5"]

    def train(self, name, mode, data, *overrides, teacher=None):
        args = ["train", "--mode", mode, "--data", data, *self.common, "-o", f"run.name={name}"]
        if teacher:
            args += ["--teacher", teacher]
        for o in overrides:
            args += ["-o", o]
        return run(args, os.path.join(self.opts.runs, f"{name}.log"))

    def seconds_per_step(self, data, kind, model, size):
        """Seconds of one optimizer step of `kind`, from 40 steps."""
        name = f"calibrate-{kind}-{model}"
        if kind == "distill":
            raise ValueError("distillation is calibrated against its teacher")
        overrides = [f"large.model={model}", f"large.input_size={size}", "large.log_interval=10",
                     "large.evals_per_stage=1"]
        if kind == "supervised":
            overrides += ["large.steps=40", "large.ssl.algorithm=supervised"]
            stage, per_step = "supervised", BATCH
        else:
            overrides += ["large.steps=0", "large.ssl.steps=40", f"large.ssl.mu={MU}"]
            stage, per_step = "ssl", BATCH * (1 + MU)
        self.train(name, "large", data, *overrides)
        ips = images_per_s(os.path.join(self.opts.runs, name, "metrics.csv"), stage)
        return per_step / ips


def mean_std(values):
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def ssl_arms(bench, fraction, seeds):
    opts = bench.opts
    data, full = dataset(fraction), dataset(1.0)
    model = ["large.model=resnet18", "large.input_size=32"]
    sup = bench.seconds_per_step(data, "supervised", "resnet18", 32)
    fix = bench.seconds_per_step(data, "fixmatch", "resnet18", 32)
    steps_a = round(opts.budget / sup)
    warm = round(opts.warm_share * opts.budget / sup)
    ssl = round((1 - opts.warm_share) * opts.budget / fix)
    results = {"a": [], "b": [], "c": []}
    for seed in seeds:
        tag = f"{fraction:g}-s{seed}"
        text = bench.train(f"a-{tag}", "large", data, *model, f"run.seed={seed}",
                           f"large.steps={steps_a}", "large.ssl.algorithm=supervised")
        results["a"].append(test_top1(text, "large"))
        text = bench.train(f"b-{tag}", "large", data, *model, f"run.seed={seed}",
                           f"large.steps={warm}", f"large.ssl.steps={ssl}", f"large.ssl.mu={MU}")
        results["b"].append(test_top1(text, "large"))
    text = bench.train(f"c-{fraction:g}", "large", full, *model, f"large.steps={steps_a}",
                       "large.ssl.algorithm=supervised")
    results["c"].append(test_top1(text, "large"))
    a, b, c = (statistics.mean(results[k]) for k in "abc")
    print(f"\n{fraction:.0%} labels, {opts.budget} s per arm, seeds {','.join(map(str, seeds))}"
          f" (supervised step {sup:.3f} s, FixMatch step {fix:.3f} s = {fix / sup:.1f}x)")
    print(f"(a) supervised on the labels, {steps_a} steps:           {mean_std(results['a'])}%")
    print(f"(b) {warm} supervised + {ssl} FixMatch steps (mu {MU}):  {mean_std(results['b'])}%")
    print(f"(c) supervised on 100% labels, {steps_a} steps (seed 0): {mean_std(results['c'])}%")
    if c != a:
        print(f"gap (a)->(c) closed by (b): {100 * (b - a) / (c - a):.0f}%;  (b) - (a): {b - a:+.2f} points")
    return os.path.join(opts.runs, f"b-{fraction:g}-s{seeds[0]}", "checkpoints", "best.safetensors")


def distill_arms(bench, fraction, seeds, teacher):
    opts = bench.opts
    data, full = dataset(fraction), dataset(1.0)
    student = ["large.model=lcnet_050", "large.input_size=32", "large.lr=0.05",
               "large.ssl.algorithm=supervised"]
    sup = bench.seconds_per_step(data, "supervised", "lcnet_050", 32)
    # A distillation step costs a supervised step plus, online, a teacher
    # forward; offline the teacher ran once, before the clock.
    steps = round(opts.budget / sup)
    results = {k: [] for k in "defg"}
    for seed in seeds:
        tag = f"{fraction:g}-s{seed}"
        text = bench.train(f"d-{tag}", "large", data, *student, f"run.seed={seed}", f"large.steps={steps}")
        results["d"].append(test_top1(text, "large"))
        for arm, mode in (("e", "offline"), ("f", "online")):
            text = bench.train(f"{arm}-{tag}", "small", data, "small.model=lcnet_050", "small.input_size=32",
                               f"run.seed={seed}", f"small.steps={steps}", f"small.distill.mode={mode}",
                               teacher=teacher)
            results[arm].append(test_top1(text, "small"))
    text = bench.train(f"g-{fraction:g}", "large", full, *student, f"large.steps={steps}")
    results["g"].append(test_top1(text, "large"))
    teacher_text = run(["eval", teacher, "--data", data, "--split", "test"],
                       os.path.join(opts.runs, f"teacher-{fraction:g}.log"))
    teacher_top1 = float(re.search(r"top-1 ([0-9.]+)%", teacher_text).group(1))
    print(f"\n{fraction:.0%} labels, lcnet_050 at 32 px, {steps} steps each "
          f"(~{opts.budget} s supervised), teacher {teacher_top1:.2f}%")
    print(f"(d) supervised on the labels:       {mean_std(results['d'])}%")
    print(f"(e) distilled offline from (b):     {mean_std(results['e'])}%")
    print(f"(f) distilled online from (b):      {mean_std(results['f'])}%")
    print(f"(g) supervised on 100% labels:      {mean_std(results['g'])}%")
    best = max(statistics.mean(results["e"]), statistics.mean(results["f"]))
    print(f"best distilled - (d): {best - statistics.mean(results['d']):+.2f} points; "
          f"teacher - best distilled: {teacher_top1 - best:.2f} points")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["ssl", "distill"])
    ap.add_argument("--budget", type=int, default=1800, help="seconds of training per arm")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--fractions", default="0.01,0.1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warm-share", type=float, default=0.3,
                    help="share of (b)'s budget spent on the supervised warm start")
    ap.add_argument("--teacher", help="distill: the teacher (default: (b) trained here first)")
    ap.add_argument("--runs", default=None)
    opts = ap.parse_args()
    opts.runs = opts.runs or subprocess.check_output(["mktemp", "-d"], text=True).strip()
    os.makedirs(opts.runs, exist_ok=True)
    bench = Bench(opts)
    seeds = [int(s) for s in opts.seeds.split(",")]
    for fraction in (float(f) for f in opts.fractions.split(",")):
        if opts.which == "ssl":
            ssl_arms(bench, fraction, seeds)
        else:
            teacher = opts.teacher or ssl_arms(bench, fraction, seeds[:1])
            distill_arms(bench, fraction, seeds, teacher)
    print(f"\nruns and logs: {opts.runs}")


if __name__ == "__main__":
    main()
