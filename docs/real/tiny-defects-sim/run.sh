#!/usr/bin/env bash
# A simulated stand-in for the kept-out real set (issue #9): one-channel PNGs of varying size, pixel
# masks, 70 % defect-free, defects of 0.02-1 % of the image (make_set.py says how). Not real data: it
# checks the default recipe on that shape of data, not on real textures. Default options throughout:
# train -> evaluate -> audit -> gate. Writes docs/real/tiny-defects-sim/{train.log,evaluation.json,audit/,gate.txt}.
#
#   bash docs/real/tiny-defects-sim/run.sh          # ~16 min on a 2-core CPU
#   SEED=7 WORK=/tmp/tiny bash docs/real/tiny-defects-sim/run.sh    # another draw of the set
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=docs/real/tiny-defects-sim
SEED=${SEED:-4242}
WORK=${WORK:-$(mktemp -d)}
if [ ! -d "$WORK/set/train" ]; then
    edge-xai simulate --out "$WORK/raw" --n 7200 --seed "$SEED" --size 256 --quiet
    python "$OUT/make_set.py" "$WORK/raw" "$WORK/set" "$SEED"
fi
. docs/real/steps.sh
train_default "$WORK/set/train"
evaluate_audit_gate "$WORK/set/test"
cat "$OUT/gate.txt"
