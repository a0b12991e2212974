#!/usr/bin/env bash
# elpv solar-cell electroluminescence images (PyPI elpv-dataset: 2624 cells, 300x300, defect probability
# 0, 1/3, 2/3 or 1) through edge-xai with default options, on the fixed stratified 75/25 split committed
# in split.csv: prepare -> train -> evaluate (four classes, and functional vs defective at p >= 0.5)
# -> audit -> gate. The set has no masks: localisation is not measured. Writes docs/real/elpv/*.
#
#   pip install elpv-dataset && bash docs/real/elpv/run.sh        # ~15 min on a 2-core CPU
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=docs/real/elpv
WORK=${WORK:-$(mktemp -d)}
[ -d "$WORK/data/train" ] || python "$OUT/prepare.py" --out "$WORK/data"
. docs/real/steps.sh
train_default "$WORK/data/train"
evaluate_audit_gate "$WORK/data/test"
python - "$OUT/evaluation.json" > "$OUT/binary.json" <<'PY'
# functional (p < 0.5: ok, p33) vs defective (p >= 0.5: p67, p100), from the confusion matrix
import json, sys
m = json.load(open(sys.argv[1]))
classes, cm = m["confusion"]["classes"], m["confusion"]["matrix"]
defective = {"p67", "p100"}
right = sum(cm[i][j] for i, a in enumerate(classes) for j, b in enumerate(classes) if (a in defective) == (b in defective))
total = sum(map(sum, cm))
print(json.dumps({"four_class_accuracy": m["accuracy"], "functional_vs_defective_accuracy": right / total,
                  "samples": total}, indent=2))
PY
cat "$OUT/binary.json"
cat "$OUT/gate.txt"
