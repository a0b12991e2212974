#!/usr/bin/env bash
# A stand-in for the kept-out real set on real surface texture: simulated defects laid on real photographs
# of defect-free solar cells (elpv), one-channel PNGs of varying size, pixel masks, 70 % defect-free
# (make_set.py says how). Default options throughout: train -> evaluate -> audit -> gate. Writes
# docs/real/real-texture-sim/{train.log,evaluation.json,audit/,gate.txt}.
#
#   pip install elpv-dataset && bash docs/real/real-texture-sim/run.sh        # ~10 min on a 2-core CPU
#   SEED=7 WORK=/tmp/rt bash docs/real/real-texture-sim/run.sh                 # another draw of the set
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=docs/real/real-texture-sim
SEED=${SEED:-4242}
WORK=${WORK:-$(mktemp -d)}
[ -d "$WORK/set/train" ] || python "$OUT/make_set.py" "$WORK/set" "$SEED"
. docs/real/steps.sh
train_default "$WORK/set/train"
evaluate_audit_gate "$WORK/set/test"
cat "$OUT/gate.txt"
