#!/usr/bin/env bash
# The whole target-device run (issue #10) in one call of the device tool, sized for well under 8 minutes:
#
#   bash benchmarks/device_fetch.sh --ort      # here, once: .whl/ (reference libraries, pycuda's deps),
#                                              # .pycuda/ (its sdist), .ortp1..5 (onnxruntime-gpu in parts)
#   device runs, back to back (a warm machine keeps the parts; 30 s idle gives it back):
#     bash benchmarks/device_ort_parts.sh      # carry [".ortp1"], then [".ortp2"], ... all but the last part
#     bash benchmarks/device.sh --skip ort_cuda_options   # carry [last part, ".whl", ".pycuda"], timeout_s 300
#   (the number of parts follows the working tree's size: 6 on 2026-11-29, .ortp1 ... .ortp6)
#   bash benchmarks/device.sh --dry-run        # here, on the CPU: every step that needs no GPU
# Without --ort (and the parts) the ONNX Runtime CUDA steps are skipped, named; the rest runs.
#
# Writes $OUT/device-<gpu>.json and $OUT/device.log (benchmarks/device.py says what each step measures).
# The kernels are launched through CuPy first (the image has it) and through pycuda once it is built
# here in the background (edge/explain/cuda_cupy.py, edge/explain/cuda.py: the same kernels and geometry).
# Measured on an H200 (2026-11-29): 50-60 s for this script, 5 s per part call, about 35 s for a start;
# one whole round (start, parts, script) held the machine 100-140 s.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# pycuda has no wheels: build it from the carried sdist in the background, overlapping the CuPy steps;
# device.py's last step waits for it (and reports the build time apart from every measurement).
if ls .pycuda/pycuda-*.tar.gz >/dev/null 2>&1; then
  python3 benchmarks/build_pycuda.py .pycuda/pycuda-*.tar.gz /tmp/pycuda-build > "$OUT/pycuda-build.log" 2>&1 &
fi
if ls .whl/* >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target /tmp/edge-site .whl/* \
    && export PYTHONPATH=/tmp/edge-site${PYTHONPATH:+:$PYTHONPATH}
fi
source benchmarks/device_ort_parts.sh
if [ -d /tmp/ortgpu-site/onnxruntime ]; then
  # ahead of the image's CPU onnxruntime; its CUDA 13 libraries (cuBLAS, cuDNN, cuFFT, cuRAND) are the
  # nvidia-* wheels beside PyTorch
  export PYTHONPATH=/tmp/ortgpu-site${PYTHONPATH:+:$PYTHONPATH}
  NV=$(python3 -c "import nvidia; print(list(nvidia.__path__)[0])" 2>/dev/null)
  [ -n "$NV" ] && export LD_LIBRARY_PATH=$(find "$NV" -name 'lib*.so*' -printf '%h\n' | sort -u | tr '\n' ':')${LD_LIBRARY_PATH:-}
fi
export PYTHONPATH=$PWD:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}
python3 benchmarks/device.py --out "$OUT" "$@" 2>&1 | tee -a "$OUT/device-console.log"
exit "${PIPESTATUS[0]}"
