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

# --ort: onnxruntime-gpu too (CUDA 13 build, as the GPU machine's CUDA), repacked with xz and split into
# .ortp1, .ortp2, ... each small enough to travel beside the working tree in one device call (64 MiB).
if [ "${1:-}" = "--ort" ]; then
  ORT=onnxruntime-gpu==${ORT_VERSION:-1.31.1}
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$tmp" "$ORT"
  (cd "$tmp" && mkdir pkg && cd pkg && unzip -q ../onnxruntime_gpu-*.whl)
  tar -C "$tmp/pkg" -cf - . | xz -T0 -6 > "$tmp/ort.tar.xz"
  tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb | tail -1 | cut -f1)
  part=$(( (60 << 20) - tree ))
  rm -rf .ortp*
  (cd "$tmp" && split -b "$part" -d -a 2 ort.tar.xz ort.tar.xz.part && sha256sum ort.tar.xz.part* > MANIFEST)
  i=0
  for p in "$tmp"/ort.tar.xz.part*; do
    i=$((i + 1)); mkdir -p ".ortp$i"; mv "$p" ".ortp$i/"; cp "$tmp/MANIFEST" ".ortp$i/"
    grep -qx "/.ortp$i/" .git/info/exclude || echo "/.ortp$i/" >> .git/info/exclude
  done
  rm -rf "$tmp"
  ls -l .ortp*
fi
