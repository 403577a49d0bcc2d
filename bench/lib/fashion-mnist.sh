# Sourced by the Fashion-MNIST benchmarks (ssl-gain.sh, distill-gain.sh), run
# from the repository root: the release binary, a runs folder ($RUNS or a
# fresh temporary one) and the two datasets, 10% and 100% of the train
# labels, built once under data/.
SEMICLASS=target/release/semiclass
RUNS=${RUNS:-$(mktemp -d)}
mkdir -p "$RUNS"
TEN=data/fashion-mnist
ALL=data/fashion-mnist-all-labels
[ -d "$TEN" ] || $SEMICLASS demo-data fashion-mnist "$TEN" --labeled-frac 0.1
[ -d "$ALL" ] || $SEMICLASS demo-data fashion-mnist "$ALL" --labeled-frac 1.0

# test_top1 LOG [MODEL]: the test.txt top-1 (%) a training log reports for
# MODEL (large or small; default large).
test_top1() { grep "^${2:-large}: test.txt" "$1" | sed -E 's/.*top-1 ([0-9.]+)%.*/\1/'; }
