#!/usr/bin/env bash
# Does bf16 autocast pay for training on this CPU? PyTorch eager, the same
# timm models, batch, loss and SGD as bench/train-step.sh (our trainer runs
# the same libtorch kernels through tch), fp32 against the forward pass and
# loss under torch.autocast("cpu", bfloat16), alternated round by round so
# machine noise hits both alike; best of ROUNDS. Prints the CPU's bf16
# features first: without avx512_bf16 / amx_bf16, oneDNN converts to and
# from bf16 around fp32 arithmetic.
# Run through `make bench` (sets up the venv) or with the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."
# One round of 3 timed steps by default: bf16 runs ~10x slower than fp32 on
# a CPU without bf16 instructions, far beyond this machine's noise.
ROUNDS=${ROUNDS:-1}
echo "cpu bf16 features: $(grep -o -w -E 'avx512_bf16|amx_bf16|avx512_vnni|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"
max() { python -c "print(max($1, $2))"; }
echo "model      input  fp32 img/s  bf16 img/s  bf16/fp32"
for spec in "resnet18 32 64 3" "lcnet_050 32 64 3"; do
    read -r model size batch steps <<<"$spec"
    fp32=0; bf16=0
    for _ in $(seq "$ROUNDS"); do
        fp32=$(max "$fp32" "$(python bench/train_step.py "$model" "$size" "$batch" "$steps" 2 fp32)")
        bf16=$(max "$bf16" "$(python bench/train_step.py "$model" "$size" "$batch" "$steps" 2 bf16)")
    done
    python -c "import sys; m,s,a,b=sys.argv[1],int(sys.argv[2]),float(sys.argv[3]),float(sys.argv[4]); print(f'{m:<10} {s:5d}  {a:10.1f}  {b:10.1f}  {b/a:9.2f}')" "$model" "$size" "$fp32" "$bf16"
done
