#!/usr/bin/env bash
# Fetch, here, the few packages the GPU machine lacks for benchmarks/device.sh (it cannot download): the
# reference libraries pytorch-grad-cam (+ ttach) and Captum, and pycuda's pure-Python dependencies (+ siphash24,
# a cp312 wheel), as files in .whl/; pycuda's sdist in .pycuda/ (built there: benchmarks/build_pycuda.py).
# Both folders are ignored by git and carried. Python 3.12 on the device. About 4 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
for d in .whl .pycuda; do
  grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude
  mkdir -p "$d"
done
python3 -m pip download -q --no-deps -d .whl grad-cam==1.5.7 ttach==0.0.3 captum==0.9.0
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pytools==2026.1.1 platformdirs==4.14.8 mako==1.4.3 siphash24==1.9
python3 -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d .pycuda pycuda==2026.1
ls -l .whl .pycuda
