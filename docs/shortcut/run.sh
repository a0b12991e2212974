#!/usr/bin/env bash
# Catching a shortcut: a classifier trained on frames whose defect class is also written into a
# spurious sensor mark (`edge-xai simulate --artifact`) scores well but looks at the mark; the audit's
# localisation measures see it and the default gate fails the model, while the shipped classifier,
# audited on the very same frames, passes.
#
#   bash docs/shortcut/run.sh                 # ~20 min on a 2-core CPU; writes docs/shortcut/*
#   WORK=/tmp/sc bash docs/shortcut/run.sh    # keep the data and the trained model in /tmp/sc
#
# Data: 3000 training frames (seed 2) and 600 test frames (seed 2000), both with the mark on 90 % of
# the defective frames (the simulator's default rate), and 600 clean frames (seed 1000). The shortcut model is trained without flips:
# a flip moves the mark, and the experiment wants the mark to be as reliable as it is on a real line
# whose camera always leaves the same smudge in the same place. It is also trained without the mask loss
# (--mask-weight 0), as a model trained on labels alone: supervising where the defect is would steer it
# away from the mark, which is the point of the mask loss but not of this experiment. The time budget is
# generous so that the 10 epochs are 10 on any machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=docs/shortcut
WORK=${WORK:-$(mktemp -d)}
[ -d "$WORK/train" ] || edge-xai simulate --out "$WORK/train" --n 3000 --seed 2 --artifact
[ -d "$WORK/test" ] || edge-xai simulate --out "$WORK/test" --n 600 --seed 2000 --artifact
[ -d "$WORK/clean" ] || edge-xai simulate --out "$WORK/clean" --n 600 --seed 1000     # the held-out seed, no mark
[ -f "$WORK/model/manifest.json" ] || edge-xai train --task defect --data "$WORK/train" --out "$WORK/model" \
    --epochs 10 --no-augment --mask-weight 0 --time-budget 120 --seed 0
for name in shortcut shipped; do
    model=$WORK/model
    [ "$name" = shipped ] && model=models/defect
    edge-xai audit --model "$model" --data "$WORK/test" --out "$OUT/$name"
    # the gate's verdict is the result here, so its exit code (1 = failed) is kept in the file, not fatal
    set +e
    edge-xai gate "$OUT/$name/metrics.json" > "$OUT/$name/gate.txt"
    echo "exit code $?" >> "$OUT/$name/gate.txt"
    set -e
done
# without the mark, the shortcut model loses exactly the classes it learnt from the mark
edge-xai evaluate --model "$WORK/model" --data "$WORK/clean" --json --quiet > "$OUT/shortcut/clean-evaluation.json"
tail -n +1 "$OUT"/*/gate.txt
