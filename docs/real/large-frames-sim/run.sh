#!/usr/bin/env bash
# Frames larger than the model's input, with tiny defects (make_set.py says how they are made; simulated,
# not real textures): the same data trained three ways, all judged on the whole test frames as the
# served path reads them.
#   A. the frames as they are (--tile off): training letterboxes each into one input (<= 256 px);
#   B. the frames cut into 256 px tiles first (edge-xai dataset --from-folder --tile 256, each split on its
#      own), then default options: the model trains at the frames' own pixels, and evaluate/serve inspect a
#      whole frame in tiles at that scale, the worst tile deciding;
#   C. default options on the frames (since 2026-11-30 training cuts them into tiles by itself where the
#      defects need it: --tile auto), audited and gated on the whole test frames (the audit cuts them as
#      the service reads them).
# Then B is audited and gated on the test tiles (its own scale). Writes docs/real/large-frames-sim/
# {A,B,C}/{train.log,evaluation.json}, B/{tiles-train.json,tiles-test.json,tiles-evaluation.json,audit/,gate.txt,frames.json},
# C/{audit/,gate.txt} (RESULTS=DIR writes them elsewhere). The committed A and B are of 2026-11-29 (A with
# default options then, which trained whole frames).
#
#   bash docs/real/large-frames-sim/run.sh        # ~40 min on a 2-core CPU; the raw simulation needs
#                                                 # ~21 GB of disk for a moment (removed once the set is made)
#   SEED=6262 WORK=/tmp/lf RESULTS=/tmp/lf/results bash docs/real/large-frames-sim/run.sh    # another draw
set -euo pipefail
cd "$(dirname "$0")/../../.."
HERE=docs/real/large-frames-sim
RESULTS=${RESULTS:-$HERE}        # where the logs, evaluations, audit and gate output go
SEED=${SEED:-5151}
WORK=${WORK:-$(mktemp -d)}
if [ ! -d "$WORK/set/train" ]; then
    edge-xai simulate --out "$WORK/raw" --n 1246 --seed "$SEED" --size 768 --quiet
    python "$HERE/make_set.py" "$WORK/raw" "$WORK/set" "$SEED"
    rm -rf "$WORK/raw"
fi
. docs/real/steps.sh

# A: whole frames
OUT=$RESULTS/A; mkdir -p "$OUT"
WORK_ALL=$WORK; WORK=$WORK_ALL/A
train_default "$WORK_ALL/set/train" --tile off
edge-xai evaluate --model "$WORK/model" --data "$WORK_ALL/set/test" --json --quiet > "$OUT/evaluation.json"
edge-xai evaluate --model "$WORK/model" --data "$WORK_ALL/set/test" --quiet

# C: default options on the frames (training tiles them itself)
OUT=$RESULTS/C; mkdir -p "$OUT"
WORK=$WORK_ALL/C
train_default "$WORK_ALL/set/train"
evaluate_audit_gate "$WORK_ALL/set/test"

# B: tiles
OUT=$RESULTS/B; mkdir -p "$OUT"
WORK=$WORK_ALL/B
for split in train test; do
    [ -d "$WORK_ALL/tiles/$split" ] || edge-xai dataset --from-folder "$WORK_ALL/set/$split" --tile 256 \
        --out "$WORK_ALL/tiles/$split" --json > "$OUT/tiles-$split.json"
done
train_default "$WORK_ALL/tiles/train"
# its own scale: the test tiles, evaluated, audited, gated
evaluate_audit_gate "$WORK_ALL/tiles/test"
mv "$OUT/evaluation.json" "$OUT/tiles-evaluation.json"
# the served path's: whole test frames, each inspected in tiles, the worst tile deciding
edge-xai evaluate --model "$WORK/model" --data "$WORK_ALL/set/test" --json --quiet > "$OUT/evaluation.json"
edge-xai evaluate --model "$WORK/model" --data "$WORK_ALL/set/test" --quiet
# what a line camera's 2448x2048 frame costs with this model (in tiles), served path
python benchmarks/frames.py --model "$WORK/model" --runs 10 --out "$OUT/frames.json"
cat "$OUT/gate.txt"
