#!/usr/bin/env bash
# A stand-in for the kept-out real set with the kinds of defect the other stand-ins lack (breaks at the
# part's border, broad faint unevenness) and elongated frames, on real surface texture (elpv cells);
# make_set.py says how. Default options throughout: train -> evaluate -> audit -> gate. Writes
# docs/real/tile-shapes-sim/{train.log,evaluation.json,audit/,gate.txt}.
#
#   pip install elpv-dataset && bash docs/real/tile-shapes-sim/run.sh        # ~15 min on a 2-core CPU
#   SEED=7 WORK=/tmp/ts bash docs/real/tile-shapes-sim/run.sh                 # another draw of the set
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=docs/real/tile-shapes-sim
SEED=${SEED:-4242}
WORK=${WORK:-$(mktemp -d)}
[ -d "$WORK/set/train" ] || python "$OUT/make_set.py" "$WORK/set" "$SEED"
. docs/real/steps.sh
train_default "$WORK/set/train"
evaluate_audit_gate "$WORK/set/test"
cat "$OUT/gate.txt"
