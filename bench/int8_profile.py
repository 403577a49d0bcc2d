"""Where an int8 graph spends its time against its float graph, as ONNX
Runtime runs them (2 intra-op threads, batch 1, all graph optimisations):
the kernels left after ONNX Runtime's graph optimisation (saved with
`optimized_model_filepath`) and the time its profiler gives each kind of
kernel, side by side, with the float and integer convolutions paired in
execution order. Issue 17 item 2(b).

  python bench/int8_profile.py FP32.onnx INT8.onnx [RUNS] [OUT_DIR]

RUNS (default 30) runs after 5 warm-up runs on one random input, all
profiled; each kernel is counted at its median and at its fastest run (on
a shared machine the fastest is the estimate of an undisturbed run).
OUT_DIR (default a temporary folder) keeps the optimized models and the
profiler's JSON."""
import collections
import json
import os
import statistics
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort


def session(model, optimized, profile=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.optimized_model_filepath = optimized
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def kernels(optimized):
    """Op type -> count in the optimized model."""
    graph = onnx.load(optimized).graph
    return collections.Counter(node.op_type for node in graph.node)


def profile(model, runs, out_dir, tag):
    s = session(model, os.path.join(out_dir, f"{tag}-optimized.onnx"),
                os.path.join(out_dir, tag))
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(5):
        s.run(None, {inp.name: x})
    for _ in range(runs):
        s.run(None, {inp.name: x})
    events = json.load(open(s.end_profiling()))
    # Each kernel's median over the runs (warm-up included), in ms: the
    # machine is shared, and a median ignores the runs another process
    # preempted.
    times = collections.defaultdict(list)
    shapes = {}
    runs_ms = []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            key = (e["args"]["op_name"], e["name"][: -len("_kernel_time")])
            times[key].append(e["dur"] * 1e-3)
            shapes[key] = e["args"].get("output_type_shape")
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            runs_ms.append(e["dur"] * 1e-3)
    per_node = {key: statistics.median(v) for key, v in times.items()}
    per_op = collections.defaultdict(float)
    for (op, _), ms in per_node.items():
        per_op[op] += ms
    # The sum of each kernel's fastest run: what a run would take with
    # the machine to itself.
    fastest = sum(min(v) for v in times.values())
    return per_op, per_node, (statistics.median(runs_ms), fastest), shapes


def convolutions_side_by_side(results):
    """The float and the integer convolutions paired in execution order
    (both graphs keep the checkpoint's order), where the counts agree."""
    pick = lambda tag, ops: [(k, v) for k, v in results[tag][1].items() if k[0] in ops]
    fp32 = pick("fp32", {"Conv", "FusedConv"})
    int8 = pick("int8", {"QLinearConv"})
    if len(fp32) != len(int8):
        print(f"\n{len(fp32)} float and {len(int8)} integer convolutions: not paired")
        return
    print("\nconvolutions in execution order: fp32 ms, int8 ms, int8/fp32, output")
    for (fk, fv), (ik, iv) in zip(fp32, int8):
        shape = results["int8"][4].get(ik)
        print(f"  {fv:6.3f} {iv:6.3f} {iv / fv:5.2f}  {shape}  {ik[1]}")


def main():
    fp32, int8 = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    out_dir = sys.argv[4] if len(sys.argv) > 4 else tempfile.mkdtemp()
    os.makedirs(out_dir, exist_ok=True)
    results = {}
    for tag, model in (("fp32", fp32), ("int8", int8)):
        ops, nodes, total, shapes = profile(model, runs, out_dir, tag)
        count = kernels(os.path.join(out_dir, f"{tag}-optimized.onnx"))
        results[tag] = (ops, nodes, total, count, shapes)
    print(f"ms per run (each kernel's median over {runs + 5} profiled runs), kernels after optimisation")
    print(f"{'op':<28} {'fp32 n':>6} {'fp32 ms':>8} {'int8 n':>6} {'int8 ms':>8}")
    ops = set(results["fp32"][0]) | set(results["int8"][0])
    order = sorted(ops, key=lambda o: -max(results[t][0].get(o, 0) for t in results))
    for op in order:
        row = [op]
        for tag in ("fp32", "int8"):
            row += [results[tag][3].get(op, 0), results[tag][0].get(op, 0.0)]
        print(f"{row[0]:<28} {row[1]:>6} {row[2]:8.2f} {row[3]:>6} {row[4]:8.2f}")
    f_ops, i_ops = results["fp32"][0], results["int8"][0]
    print(f"{'sum of kernel medians':<28} {'':>6} {sum(f_ops.values()):8.2f} {'':>6} {sum(i_ops.values()):8.2f}")
    (f_run, f_fast), (i_run, i_fast) = results["fp32"][2], results["int8"][2]
    print(f"{'sum of kernel minima':<28} {'':>6} {f_fast:8.2f} {'':>6} {i_fast:8.2f}")
    print(f"{'median model_run':<28} {'':>6} {f_run:8.2f} {'':>6} {i_run:8.2f}")
    print(f"int8/fp32: kernel medians {sum(i_ops.values()) / sum(f_ops.values()):.3f}, "
          f"kernel minima {i_fast / f_fast:.3f}, model_run {i_run / f_run:.3f}")
    print(f"\nslowest int8 kernels:")
    top = sorted(results["int8"][1].items(), key=lambda kv: -kv[1])[:25]
    for (op, name), ms in top:
        print(f"  {ms:7.3f} ms  {op:<22} {name}")
    convolutions_side_by_side(results)
    print(f"\noptimized models and profiles in {out_dir}")


if __name__ == "__main__":
    main()
