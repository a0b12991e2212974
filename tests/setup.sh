#!/usr/bin/env bash
# Everything the tests need, on a fresh machine: the package with its dev extra, pytorch-grad-cam
# without its torchvision requirement (which would pull a multi-GB CUDA torch; see tests/helpers/reference_libs.py),
# and Debian's chromium for the HMI browser test (Playwright drives it; no browser download).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -e '.[dev]'
pip install -q --no-deps grad-cam==1.5.7
if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get install -y -q chromium >/dev/null || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; }
fi
