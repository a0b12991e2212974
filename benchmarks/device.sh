#!/usr/bin/env bash
# The whole target-device run (issue #10) in one call of the device tool, sized for well under 8 minutes:
#
#   bash benchmarks/device_fetch.sh            # here, once: the reference libraries into .whl/
#   device run:  bash benchmarks/device.sh     # carry [".whl", ".pycuda"], timeout_s 420; results under $OUT
#   bash benchmarks/device.sh --dry-run        # here, on the CPU: every step that needs no GPU
#   with onnxruntime-gpu: `device_fetch.sh --ort` here, then device runs of device_ort_parts.sh carrying
#   .ortp1, .ortp2, ... back to back (a warm machine keeps them), the last with this script
#
# Writes $OUT/device-<gpu>.json and $OUT/device.log (benchmarks/device.py says what each step measures).
# The kernels are launched through CuPy there (the image has it; pycuda is source-only and would cost a
# build): edge/explain/cuda_cupy.py, the same kernels and launch geometry as the pycuda launcher.
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
