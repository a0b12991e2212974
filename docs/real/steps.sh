# The steps every real-data experiment shares; sourced by docs/real/<set>/run.sh, which sets OUT (the
# set's folder, where results are written) and WORK (where the data and the trained model live).

# train_default DATA [OPTION...]: `edge-xai train --task defect` with default options (and any OPTIONs
# given after DATA) into $WORK/model, unless a model is there already. Progress shows live;
# $OUT/train.log keeps every printed line without the progress bars' carriage-return updates.
train_default() {
    [ -f "$WORK/model/manifest.json" ] && return 0
    local data=$1
    shift
    set +o pipefail
    /usr/bin/time -f "train wall %e s" edge-xai train --task defect --data "$data" --out "$WORK/model" "$@" \
        2>&1 | tee "$OUT/train.log" | grep -v "epoch .*batch/s\|it/s"
    local status=${PIPESTATUS[0]}
    set -o pipefail
    [ "$status" = 0 ] || { echo "training failed: see $OUT/train.log" >&2; exit 1; }
    tr '\r' '\n' < "$OUT/train.log" | grep -v "batch/s\|s/batch\|file/s\|s/file\|it/s\|s/it\|^ *$" > "$OUT/train.log.tmp" || true
    mv "$OUT/train.log.tmp" "$OUT/train.log"
}

# evaluate_audit_gate DATA: $OUT/evaluation.json, the audit in $OUT/audit, and the gate's verdict with its
# exit code in $OUT/gate.txt (a failed gate is a result here, not an error).
evaluate_audit_gate() {
    edge-xai evaluate --model "$WORK/model" --data "$1" --json --quiet > "$OUT/evaluation.json"
    edge-xai evaluate --model "$WORK/model" --data "$1" --quiet
    edge-xai audit --model "$WORK/model" --data "$1" --out "$OUT/audit"
    set +e
    edge-xai gate "$OUT/audit/metrics.json" > "$OUT/gate.txt"
    echo "exit code $?" >> "$OUT/gate.txt"
    set -e
}
