#!/usr/bin/env bash
# On the GPU machine: collect the parts of onnxruntime-gpu that this call carried (.ortp*/, made here by
# `bash benchmarks/device_fetch.sh --ort`) under /tmp/ort-parts, and once all of them are there (their
# sha256 in MANIFEST), unpack the package into /tmp/ortgpu-site. The wheel (256 MB) is four times what one
# call may carry, so it travels over successive calls to a machine kept warm; device.sh sources this.
#   device run:  bash benchmarks/device_ort_parts.sh      # carry [".ortp1"], then [".ortp2"], ... at once
mkdir -p /tmp/ort-parts
for d in .ortp*; do
  [ -d "$d" ] && cp "$d"/* /tmp/ort-parts/
done
if [ -f /tmp/ort-parts/MANIFEST ] && [ ! -d /tmp/ortgpu-site/onnxruntime ]; then
  if (cd /tmp/ort-parts && sha256sum --quiet -c MANIFEST 2>/dev/null); then
    cat /tmp/ort-parts/ort.tar.xz.part* > /tmp/ort.tar.xz && mkdir -p /tmp/ortgpu-site \
      && python3 -c "import tarfile; tarfile.open('/tmp/ort.tar.xz').extractall('/tmp/ortgpu-site', filter='data')" \
      && rm -f /tmp/ort.tar.xz && echo "onnxruntime-gpu unpacked in /tmp/ortgpu-site"
  else
    echo "onnxruntime-gpu parts so far: $(cd /tmp/ort-parts && ls ort.tar.xz.part* 2>/dev/null | tr '\n' ' ')"
  fi
fi
