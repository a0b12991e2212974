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
. docs/real/steps.sh
train_default "$NEU/train"
evaluate_audit_gate "$NEU/test"
python - "$WORK/model/manifest.json" > "$OUT/model.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
keep = {k: m[k] for k in ("classes", "input", "target_layer", "parity") if k in m}
keep["training"] = {k: v for k, v in m["training"].items() if k != "history"}
keep["sha256"] = m["files"]["predict.onnx"]
print(json.dumps(keep, indent=2))
PY
cat "$OUT/gate.txt"
