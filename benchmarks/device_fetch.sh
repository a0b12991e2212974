#!/usr/bin/env bash
# Fetch, here, the few packages the GPU machine lacks for benchmarks/device.sh (it cannot download): the
# reference libraries pytorch-grad-cam (+ ttach) and Captum, as files in .whl/ (ignored by git; carried).
# Python 3.12 on the device; all three are pure Python. About 2 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps -d .whl grad-cam==1.5.7 ttach==0.0.3 captum==0.9.0
ls -l .whl
