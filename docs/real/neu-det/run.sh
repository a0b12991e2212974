#!/usr/bin/env bash
# NEU-DET steel surface defects (../shared/datasets/neu-det: six classes, 200x200 grayscale, Pascal VOC
# boxes, the set's fixed 70/30 split) through edge-xai with default options: train -> evaluate -> audit
# -> gate. Writes docs/real/neu-det/{train.log,evaluation.json,audit/,gate.txt}.
#
#   bash docs/real/neu-det/run.sh                   # ~15 min on a 2-core CPU
#   NEU=/path/to/neu-det WORK=/tmp/neu bash docs/real/neu-det/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=docs/real/neu-det
NEU=${NEU:-../shared/datasets/neu-det}
WORK=${WORK:-$(mktemp -d)}
[ -d "$NEU/train" ] || { echo "no NEU-DET at $NEU (set NEU=...)" >&2; exit 2; }
if [ ! -f "$WORK/model/manifest.json" ]; then
    set +o pipefail
    /usr/bin/time -f "train wall %e s" edge-xai train --task defect --data "$NEU/train" --out "$WORK/model" \
        2>&1 | tee "$OUT/train.log" | grep -v "epoch .*batch/s\|it/s"
    [ "${PIPESTATUS[0]}" = 0 ] || { echo "training failed: see $OUT/train.log" >&2; exit 1; }
    set -o pipefail
    # keep the log readable: the progress bars' carriage-return updates out, every printed line in
    tr '\r' '\n' < "$OUT/train.log" | grep -v "batch/s\|file/s\|it/s\|^ *$" > "$OUT/train.log.tmp" || true
    mv "$OUT/train.log.tmp" "$OUT/train.log"
fi
edge-xai evaluate --model "$WORK/model" --data "$NEU/test" --json --quiet > "$OUT/evaluation.json"
edge-xai evaluate --model "$WORK/model" --data "$NEU/test" --quiet
edge-xai audit --model "$WORK/model" --data "$NEU/test" --out "$OUT/audit"
set +e
edge-xai gate "$OUT/audit/metrics.json" > "$OUT/gate.txt"
echo "exit code $?" >> "$OUT/gate.txt"
set -e
python - "$WORK/model/manifest.json" > "$OUT/model.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
keep = {k: m[k] for k in ("classes", "input", "target_layer", "parity") if k in m}
keep["training"] = {k: v for k, v in m["training"].items() if k != "history"}
keep["sha256"] = m["files"]["predict.onnx"]
print(json.dumps(keep, indent=2))
PY
cat "$OUT/gate.txt"
